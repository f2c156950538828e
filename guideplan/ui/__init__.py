"""guideplan.ui (see ARCHITECTURE.md)."""
