"""guideplan.processing (see ARCHITECTURE.md)."""
