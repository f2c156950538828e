"""The workstation look: dark, quiet, like the consoles radiologists know."""

STYLE_SHEET = """
QWidget { background: #1b1d21; color: #d4d4d4; font-size: 10pt; }
QMainWindow::separator { background: #2a2d33; width: 3px; height: 3px; }
QMenuBar, QMenu { background: #202227; color: #d4d4d4; }
QMenu::item:selected, QMenuBar::item:selected { background: #35507a; }
QDockWidget::title { background: #23262b; padding: 4px; }
QPushButton {
    background: #2b2f36; border: 1px solid #3a3f47; padding: 4px 8px; border-radius: 3px; }
QPushButton:checked { background: #35507a; border-color: #5078b0; }
QPushButton:hover { border-color: #5078b0; }
QComboBox, QListWidget, QTableWidget, QLineEdit {
    background: #23262b; border: 1px solid #3a3f47; selection-background-color: #35507a; }
QHeaderView::section { background: #2b2f36; border: 0; padding: 3px; }
QSlider::groove:horizontal { height: 4px; background: #30343b; }
QSlider::handle:horizontal { background: #8a96a8; width: 10px; margin: -4px 0; border-radius: 3px; }
QWidget:disabled { color: #6b7078; }
QPushButton:disabled { background: #23262b; border-color: #2e3238; }
QStatusBar { background: #17191c; color: #b8b8b8; }
QProgressDialog { background: #23262b; }
"""
