"""guideplan.render (see ARCHITECTURE.md)."""
