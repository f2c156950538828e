"""guideplan.model (see ARCHITECTURE.md)."""
