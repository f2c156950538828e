"""A case whose data file changed on disk: the window says which, and offers the rest."""

import json

import numpy as np
from PySide6.QtWidgets import QMessageBox

from guideplan.model.commands import AddNode
from guideplan.model.nodes import LabelMapNode, MeasurementNode
from guideplan.ui.main_window import MainWindow


def test_a_damaged_label_map_file_is_named_and_the_rest_of_the_case_opens(
    window, qtbot, tmp_path, monkeypatch
):
    ruler = MeasurementNode(name="Ruler 1", points=[(0.0, 0.0, 60.0), (30.0, 40.0, 60.0)])
    window.scene.execute(AddNode(ruler))
    labels = np.zeros(window.planning.volume.array.shape, np.uint8)
    labels[2:4, 10:20, 10:20] = 1
    lesion = LabelMapNode(name="lesion", array=labels, reference_id=window.planning.id)
    window.scene.execute(AddNode(lesion))
    case = tmp_path / "d.gplan"
    assert window._save_to(case)
    table = json.loads((case / "case.json").read_text())["payloads"]
    damaged = case / table[f"{lesion.id}/labels"]["file"]
    data = bytearray(damaged.read_bytes())
    data[-30] ^= 0x04
    damaged.write_bytes(bytes(data))

    asked, warned = [], []

    def question(parent, title, text, *a, **k):
        asked.append(text)
        return QMessageBox.StandardButton.Yes

    monkeypatch.setattr(QMessageBox, "question", staticmethod(question))
    monkeypatch.setattr(
        QMessageBox, "warning", staticmethod(lambda p, t, text, *a, **k: warned.append(text))
    )
    other = MainWindow()
    qtbot.addWidget(other)
    other.show()
    other.open_case(case)
    qtbot.waitUntil(lambda: other.planning is not None, timeout=20000)
    assert asked and damaged.name in asked[0] and "Open the rest" in asked[0]
    assert warned and "lesion" in warned[0]
    assert [n.name for n in other.scene.nodes_of(MeasurementNode)] == ["Ruler 1"]
    assert not other.scene.nodes_of(LabelMapNode)
