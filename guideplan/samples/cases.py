"""The three sample cases: patient build, lesion, acquisitions and the known transforms.

Why data-like dataclasses: a case is a description (who, what lesion, which series with
which geometry and motion); generate.py turns any such description into files, so a new
teaching case is a new entry here, not new code.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from guideplan.samples.anatomy import Habitus, LesionSpec, Phantom


@dataclass(frozen=True)
class Acquisition:
    """One series: orientation, sampling and its rigid offset from the planning CT.

    ``rotation_deg``/``translation_mm`` define the true transform planning-CT LPS ->
    this series' LPS (geometry.rigid_matrix about the lesion centre). ``direction`` has
    columns i, j, k in the series' own LPS. ``center_offset_mm`` moves the FOV centre
    away from the (transformed) ``center_mm`` point.

    ``patient_position`` is the DICOM PatientPosition (``POSITIONS``). The anatomy is
    the same in patient LPS whatever the position; what changes is what a scanner
    changes: the image axes of an axial series (``AXIAL`` for HFS, ``AXIAL_PRONE`` for
    HFP: the image stays upright in the gantry, so the patient's back is at the top),
    the side of the couch (posterior when supine, anterior when prone) and what
    gravity moves (bowel and stomach gas rise to the non-dependent side, the cauda
    equina roots sink to the dependent side of the dural sac).
    """

    folder: str
    modality: str
    description: str
    size: tuple[int, int, int]  # (ni, nj, nk)
    spacing: tuple[float, float, float]  # (i, j, k) mm
    direction: tuple[tuple[float, float, float], ...]  # rows of the 3x3 matrix
    center_offset_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)
    rotation_deg: tuple[float, float, float] = (0.0, 0.0, 0.0)
    translation_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)
    contrast: bool = False
    lesion_scale: float = 1.0
    study_date: str = "20260310"
    study_time: str = "083000"
    study_description: str = ""
    series_number: int = 1
    mr_sequence: dict[str, object] = field(default_factory=dict)
    #: Model point (planning-CT LPS mm) the FOV is centred on; None = the lesion centre.
    center_mm: tuple[float, float, float] | None = None
    #: DICOM PatientPosition: "HFS" (head first supine) or "HFP" (head first prone).
    patient_position: str = "HFS"

    def __post_init__(self) -> None:
        if self.patient_position not in POSITIONS:
            raise ValueError(
                f"{self.folder}: patient_position must be one of {sorted(POSITIONS)}, "
                f"got {self.patient_position!r}"
            )

    def direction_matrix(self) -> np.ndarray:
        return np.asarray(self.direction, dtype=float)

    @property
    def prone(self) -> bool:
        return self.patient_position.endswith("P")


@dataclass(frozen=True)
class Patient:
    name: str
    patient_id: str
    birth_date: str
    sex: str
    weight_kg: float


@dataclass(frozen=True)
class CaseSpec:
    """Everything that defines one sample case."""

    name: str
    title: str
    seed: int
    patient: Patient
    habitus: Habitus
    lesion: LesionSpec
    level: str | None
    bone: str
    side: str
    indication: str
    findings: str
    suggested_treatment: str
    planning_notes: tuple[str, ...]
    ct: Acquisition
    prior_ct: Acquisition
    mr: Acquisition

    def acquisitions(self) -> tuple[Acquisition, ...]:
        return (self.ct, self.prior_ct, self.mr)

    def phantom(self, lesion_scale: float = 1.0, prone: bool = False) -> Phantom:
        return Phantom(self.habitus, self.lesion, lesion_scale, prone=prone)


def _rot(axis: str, deg: float) -> np.ndarray:
    t = np.deg2rad(deg)
    c, s = np.cos(t), np.sin(t)
    if axis == "x":
        return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])
    if axis == "y":
        return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def _rows(m: np.ndarray) -> tuple[tuple[float, float, float], ...]:
    return tuple(tuple(float(round(v, 12)) for v in row) for row in m)  # type: ignore[misc]


AXIAL = _rows(np.eye(3))
#: Axial, head first prone, as a prone scanner writes it: rows toward the patient's
#: right (-x), columns toward anterior (-y), slices toward the head (+z). A 180 degree
#: roll of AXIAL about the table axis: the image is upright in the gantry, the patient's
#: back at its top.
AXIAL_PRONE = _rows(np.diag([-1.0, -1.0, 1.0]))
#: The patient positions the generator writes, with the axial direction of each.
POSITIONS: dict[str, tuple[tuple[float, float, float], ...]] = {
    "HFS": AXIAL,
    "HFP": AXIAL_PRONE,
}
#: Sagittal: i = anterior->posterior (+y), j = head->feet (-z), k = left->right (-x).
SAGITTAL = _rows(np.array([[0.0, 0, -1], [1, 0, 0], [0, -1, 0]]))
#: Coronal: i = right->left (+x), j = head->feet (-z), k = anterior->posterior (+y).
CORONAL = _rows(np.array([[1.0, 0, 0], [0, 0, 1], [0, -1, 0]]))

_T1_SE = {
    "scanning_sequence": "SE",
    "sequence_variant": "SK",
    "mr_acquisition_type": "2D",
    "repetition_time_ms": 550.0,
    "echo_time_ms": 12.0,
    "flip_angle_deg": 90.0,
    "echo_train_length": 3,
}

_PHANTOM_NOTE = (
    "Synthetic phantom generated by guideplan.samples: not patient data, not for clinical use."
)


def _l2_lesion_center() -> tuple[float, float, float]:
    lv = Phantom(Habitus()).levels["L2"]
    return (-4.0, lv.y + 7.0, lv.zc + 1.0)


def _t10_lesion_center() -> tuple[float, float, float]:
    lv = Phantom(Habitus()).levels["T10"]
    return (6.0, lv.y + 2.0, lv.zc + 1.5)


def _iliac_lesion_center() -> tuple[float, float, float]:
    ph = Phantom(Habitus())
    ysr = float(ph.spine_y(ph.level_z("S1")))
    theta = np.deg2rad(8.0)
    rho = 78.6 + 1.5
    x, y = 45.9 + rho * np.cos(theta), ysr - 68.7 + rho * np.sin(theta)
    # rounded to 0.1 mm so that the truth file states the centre exactly
    return (round(float(x), 1), round(float(y), 1), round(ph.crest_z - 16.0, 1))


def build_cases() -> dict[str, CaseSpec]:
    """The shipped cases, by folder name."""
    c1 = _l2_lesion_center()
    c2 = _iliac_lesion_center()
    c3 = _t10_lesion_center()
    cases = [
        CaseSpec(
            name="case01_l2_lytic_rfa_cement",
            title="L2 lytic metastasis with posterior-wall destruction",
            seed=101,
            patient=Patient("PHANTOM^LUMBAR", "GP-SAMPLE-01", "19610412", "F", 68.0),
            habitus=Habitus(
                width_scale=0.95, depth_scale=0.95, fat_mm=16.0, fat_back_mm=12.0, bowel_seed=1
            ),
            lesion=LesionSpec(
                "lytic", c1, (11.5, 11.0, 10.5), "body:L2", extension_mm=2.5, lobes=0.08
            ),
            level="L2",
            bone="L2 vertebral body",
            side="midline (right-posterior)",
            indication=(
                "64-year-old woman, lung adenocarcinoma. Mechanical low-back pain "
                "despite radiotherapy; MDT validated percutaneous treatment."
            ),
            findings=(
                "Lytic lesion (~22 mm, soft-tissue density) of the L2 body, "
                "right-posterior, destroying the posterior wall with a small "
                "epidural component. No vertebral collapse."
            ),
            suggested_treatment=(
                "Radiofrequency ablation followed by cementoplasty "
                "(vertebroplasty), bipedicular or right transpedicular."
            ),
            planning_notes=(
                "Planning CT acquired PRONE (head first prone, HFP), the position of the "
                "procedure: the back is up and reachable, the couch is under the belly. "
                "The prior CT and the MR are supine diagnostic scans: the patient "
                "coordinates (LPS) follow the patient, so only the image axes differ "
                "(rolled 180 degrees); bowel gas rises to the other side.",
                "Posterior-wall destruction: high risk of cement leakage into the canal; "
                "keep the ablation zone and cement away from the canal (thermocouple, "
                "cord/nerve distance setting).",
                "Conus ends above L2: cauda equina in the canal at this level.",
            ),
            ct=Acquisition(
                "ct",
                "CT",
                "Planning CT L1-L3 non-contrast prone",
                (400, 300, 104),
                (0.8, 0.8, 1.25),
                AXIAL_PRONE,
                # the couch is anterior: the FOV leans forward to keep as much of it in
                # view (about 18 mm in front of the skin) as the supine scans show behind
                center_mm=(0.0, 10.0, c1[2]),
                patient_position="HFP",
                study_date="20260310",
                study_time="083000",
                study_description="CT-guided spine intervention",
                series_number=2,
            ),
            prior_ct=Acquisition(
                "prior_ct",
                "CT",
                "CT abdomen portal venous 2.0mm",
                (440, 330, 70),
                (0.74, 0.74, 2.0),
                AXIAL,
                center_offset_mm=(-6.0, 4.0, 10.0),
                rotation_deg=(3.0, -2.5, 4.0),
                translation_mm=(18.0, -12.0, 42.0),
                contrast=True,
                lesion_scale=0.7,
                study_date="20251104",
                study_time="141500",
                study_description="CT thorax-abdomen-pelvis staging",
                series_number=3,
            ),
            mr=Acquisition(
                "mr",
                "MR",
                "T1 TSE SAG",
                (240, 280, 24),
                (1.0, 1.0, 3.5),
                _rows(_rot("z", 5.0) @ np.asarray(SAGITTAL)),
                center_offset_mm=(-3.0, 12.0, 5.0),
                rotation_deg=(-4.0, 3.0, -5.0),
                translation_mm=(-14.0, 22.0, -30.0),
                lesion_scale=0.85,
                study_date="20260203",
                study_time="101000",
                study_description="MRI lumbar spine",
                series_number=5,
                mr_sequence=_T1_SE,
            ),
        ),
        CaseSpec(
            name="case02_iliac_cryo_skin",
            title="Left iliac crest metastasis close to the skin",
            seed=202,
            patient=Patient("PHANTOM^ILIAC", "GP-SAMPLE-02", "19540923", "M", 74.0),
            habitus=Habitus(
                width_scale=0.97, depth_scale=0.95, fat_mm=15.0, fat_back_mm=9.0, bowel_seed=2
            ),
            lesion=LesionSpec(
                "lytic", c2, (14.0, 13.5, 12.5), "ilium:left", extension_mm=4.0, lobes=0.1
            ),
            level=None,
            bone="left iliac wing (crest, anterolateral)",
            side="left",
            indication=(
                "71-year-old man, clear-cell renal carcinoma. Painful left iliac "
                "crest metastasis, oligometastatic; MDT validated ablation."
            ),
            findings=(
                "Expansile lytic lesion (~25 mm) of the LEFT iliac crest with "
                "cortical breach and a lateral soft-tissue component; lesion edge "
                "less than 25 mm from the skin."
            ),
            suggested_treatment=(
                "Percutaneous cryoablation (2-3 probes), skin protection "
                "(warm saline bag / pneumodissection)."
            ),
            planning_notes=(
                "Skin distance < 25 mm: expect a skin-burn warning; plan hydro/pneumodissection.",
                "Asymmetric on purpose: the lesion is on the patient's LEFT (+x in LPS). "
                "A left/right flip puts it on the wrong side.",
            ),
            ct=Acquisition(
                "ct",
                "CT",
                "Planning CT pelvis non-contrast",
                (420, 300, 70),
                (0.85, 0.85, 2.0),
                AXIAL,
                center_mm=(0.0, 10.0, c2[2] - 15.0),
                study_date="20260317",
                study_time="091500",
                study_description="CT-guided bone intervention",
                series_number=2,
            ),
            prior_ct=Acquisition(
                "prior_ct",
                "CT",
                "CT abdomen-pelvis portal venous",
                (450, 320, 64),
                (0.78, 0.78, 2.5),
                AXIAL,
                center_mm=(0.0, 10.0, c2[2] - 15.0),
                center_offset_mm=(8.0, 5.0, -12.0),
                rotation_deg=(-3.5, 5.0, -6.0),
                translation_mm=(-22.0, 15.0, -38.0),
                contrast=True,
                lesion_scale=0.75,
                study_date="20251120",
                study_time="110000",
                study_description="CT thorax-abdomen-pelvis staging",
                series_number=4,
            ),
            mr=Acquisition(
                "mr",
                "MR",
                "T1 TSE AX OBL",
                (360, 270, 30),
                (1.0, 1.0, 4.0),
                _rows(_rot("x", 12.0)),
                center_mm=(0.0, 15.0, c2[2] - 5.0),
                center_offset_mm=(10.0, 0.0, 0.0),
                rotation_deg=(4.0, -3.0, 7.0),
                translation_mm=(12.0, -18.0, 25.0),
                lesion_scale=0.9,
                study_date="20260212",
                study_time="160500",
                study_description="MRI pelvis",
                series_number=7,
                mr_sequence=_T1_SE,
            ),
        ),
        CaseSpec(
            name="case03_t10_blastic",
            title="T10 blastic metastasis (breast cancer)",
            seed=303,
            patient=Patient("PHANTOM^THORACIC", "GP-SAMPLE-03", "19670215", "F", 59.0),
            habitus=Habitus(
                width_scale=0.92, depth_scale=0.92, fat_mm=14.0, fat_back_mm=10.0, bowel_seed=3
            ),
            lesion=LesionSpec(
                "blastic", c3, (9.5, 8.5, 8.0), "body:T10", extension_mm=0.0, lobes=0.12
            ),
            level="T10",
            bone="T10 vertebral body",
            side="midline (left)",
            indication=(
                "58-year-old woman, hormone-receptor-positive breast cancer. "
                "Painful T10 metastasis persisting after radiotherapy."
            ),
            findings=(
                "Osteoblastic (sclerotic, ~650 HU) lesion (~18 mm) of the T10 body, "
                "left of midline; cortex intact, no collapse; lungs and ribs "
                "around the access path."
            ),
            suggested_treatment=(
                "Percutaneous ablation (cryoablation or bone RF with "
                "a coaxial bone access) via a left transpedicular or "
                "costotransverse route; cement not required for a purely "
                "blastic, stable lesion (SINS low)."
            ),
            planning_notes=(
                "Planning CT acquired PRONE (HFP), the position of the procedure; the "
                "prior CT and the MR are supine diagnostic scans.",
                "Spinal cord at this level: keep the ablation zone at least the cord "
                "distance setting away from the canal.",
                "Costotransverse access passes close to the lung base and the pleura.",
            ),
            ct=Acquisition(
                "ct",
                "CT",
                "Planning CT T8-T12 non-contrast prone",
                (420, 320, 110),
                (0.78, 0.78, 1.0),
                AXIAL_PRONE,
                # the couch is anterior: the field of view leans forward (supine: y = 20)
                center_mm=(0.0, 14.0, c3[2]),
                patient_position="HFP",
                study_date="20260324",
                study_time="100000",
                study_description="CT-guided spine intervention",
                series_number=2,
            ),
            prior_ct=Acquisition(
                "prior_ct",
                "CT",
                "CT thorax portal venous 2.0mm",
                (430, 320, 64),
                (0.8, 0.8, 2.0),
                AXIAL,
                center_offset_mm=(5.0, -5.0, -8.0),
                rotation_deg=(5.0, 3.5, -3.0),
                translation_mm=(10.0, 25.0, 30.0),
                contrast=True,
                lesion_scale=0.7,
                study_date="20251015",
                study_time="090000",
                study_description="CT thorax-abdomen-pelvis staging",
                series_number=3,
            ),
            mr=Acquisition(
                "mr",
                "MR",
                "T1 TSE COR",
                (320, 240, 28),
                (1.0, 1.0, 3.0),
                _rows(_rot("x", -6.0) @ np.asarray(CORONAL)),
                center_offset_mm=(0.0, 12.0, 0.0),
                rotation_deg=(-3.0, -4.0, 6.0),
                translation_mm=(-20.0, -10.0, -35.0),
                lesion_scale=0.9,
                study_date="20260218",
                study_time="113000",
                study_description="MRI thoracic spine",
                series_number=6,
                mr_sequence=_T1_SE,
            ),
        ),
    ]
    return {c.name: c for c in cases}


CASE_NAMES: tuple[str, ...] = (
    "case01_l2_lytic_rfa_cement",
    "case02_iliac_cryo_skin",
    "case03_t10_blastic",
)

PHANTOM_NOTE = _PHANTOM_NOTE
