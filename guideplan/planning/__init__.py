"""guideplan.planning (see ARCHITECTURE.md)."""
