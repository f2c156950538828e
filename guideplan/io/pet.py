"""PET units: body-weight SUV from the tags scanners write, when they are all there.

SUVbw = activity concentration (Bq/mL) * body weight (g) / injected dose decayed to the
scan start (Bq). Only ``Units == BQML`` images can be converted; otherwise the values are
left as stored and a warning says why.
"""

from __future__ import annotations

from datetime import datetime

from guideplan.io.dicom_headers import PetInfo


def suv_factor(pet: PetInfo | None) -> tuple[float, str, str | None]:
    """(factor to multiply Bq/mL by, units label, warning or None)."""
    if pet is None:
        return 1.0, "", "PET tags missing: values left as stored"
    units = pet.units.upper()
    if units != "BQML":
        return 1.0, units, None if units else "PET units unknown: values left as stored"
    missing = [
        name
        for name, value in (
            ("PatientWeight", pet.patient_weight_kg),
            ("RadionuclideTotalDose", pet.total_dose_bq),
            ("RadionuclideHalfLife", pet.half_life_s),
        )
        if not value
    ]
    if missing:
        return 1.0, "BQML", f"SUV not computed, missing {', '.join(missing)}: values in Bq/mL"
    dose = pet.total_dose_bq
    decay = pet.decay_correction.upper()
    if decay == "START":
        inj = _parse_dt(pet.injection_datetime)
        start = _parse_dt(pet.series_datetime) or _parse_dt(pet.acquisition_datetime)
        if inj is None or start is None:
            return 1.0, "BQML", "SUV not computed: injection or scan time missing; values in Bq/mL"
        elapsed = (start - inj).total_seconds()
        if elapsed < 0:
            elapsed += 24 * 3600  # injection the day before midnight without a date
        dose = dose * 2.0 ** (-elapsed / pet.half_life_s)
    elif decay not in ("ADMIN", "NONE", ""):
        return 1.0, "BQML", f"SUV not computed: decay correction '{decay}' not supported"
    return pet.patient_weight_kg * 1000.0 / dose, "SUVbw", None


def _parse_dt(value: str | None) -> datetime | None:
    """Parse DICOM DT ('YYYYMMDDHHMMSS.ffffff') or TM ('HHMMSS.ffffff') values."""
    if not value:
        return None
    text = value.strip().split("+")[0].split("-")[0]
    main, _, frac = text.partition(".")
    micro = int((frac + "000000")[:6]) if frac else 0
    try:
        if len(main) >= 14:
            dt = datetime.strptime(main[:14], "%Y%m%d%H%M%S")
        elif len(main) >= 8 and len(main) <= 8 + 6 and len(main) > 6:
            date, tm = main[:8], (main[8:] + "000000")[:6]
            dt = datetime.strptime(date + tm, "%Y%m%d%H%M%S")
        else:
            dt = datetime.strptime((main + "000000")[:6], "%H%M%S")
    except ValueError:
        return None
    return dt.replace(microsecond=micro)
