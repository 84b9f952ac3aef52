"""The demo registry: the published seed case, and the spinal operations on osteopetrotic patients
that its discussion cites.

The seed case is recorded exactly as published (registry/demo/seed-case.json). The cited cases
are known only through the seed report's one-sentence summaries: what the summary does not say
(dates, exact levels, ages) is filled with a stated assumption, flagged in each record's notes,
so nobody mistakes the demo for data. What a citation does not mention is recorded as not
recorded (intraoperative events, complications, revision), never as none.
"""

import json
from pathlib import Path

HERE = Path(__file__).resolve().parent

SEED_CENTRE = ("SEED", "Centre of the seed case report (IRB 2016-146)")
LITERATURE_CENTRE = ("LITERATURE", "Cases cited by the seed case report")

# The citations say nothing of intraoperative events or complications: unknown, not none.
SILENT = {"intraop_events_status": "not_recorded", "postop_complications_status": "not_recorded"}
ASSUMED = "Demo record from a one-sentence citation in the seed report; assumed, not published: "


def seed_case() -> tuple[dict, list[dict]]:
    """The seed operation document and its follow-ups, as published."""
    return (json.loads((HERE / "seed-case.json").read_text()),
            [json.loads((HERE / "seed-case-follow-up.json").read_text())])


def literature_cases() -> list[tuple[dict, list[dict]]]:
    """(operation document, follow-ups) for each cited case."""
    return [
        (  # Martin [7]: cervical spondylolysis, posterior arthrodesis, pseudarthrosis at 45 months
            {
                "local_ref": "LIT-7-MARTIN", **SILENT,
                "patient": {"ref": "LIT-7-P1", "diagnosis": "ado_ii", "inheritance": "autosomal_dominant",
                            "consent": "active"},
                "operation_date": "1990-01-01", "date_precision": "year",
                "indication": "spondylolysis", "region": "cervical", "approach": "posterior",
                "procedures": ["fusion"], "levels": {"from": "C5", "to": "C6"},
                "notes": ASSUMED + "operation year and levels (C5–C6). Published: one of 5 patients with cervical "
                                   "spondylolysis underwent posterior arthrodesis; pseudarthrosis at the fixation "
                                   "level at 45 months.",
            },
            [{"local_ref": "LIT-7-MARTIN-FU45", "months_after": 45, "fusion_status": "not_fused",
              "notes": "Pseudarthrosis at the fixation level"}],
        ),
        (  # Auerbach [8]: subacute odontoid fracture, transarticular screws and interspinous wiring, fused at 2 years
            {
                "local_ref": "LIT-8-AUERBACH", **SILENT,
                "patient": {"ref": "LIT-8-P1", "diagnosis": "ado_ii", "consent": "active"},
                "operation_date": "2000-01-01", "date_precision": "year",
                "indication": "fracture", "indication_note": "Subacute odontoid fracture",
                "region": "cervical", "approach": "posterior", "procedures": ["fusion", "fracture_fixation"],
                "levels": {"from": "C1", "to": "C2"},
                "instrumentation": {"implants": [
                    {"kind": "transarticular_screw", "level": "C1", "side": "bilateral", "count": 2},
                    {"kind": "interspinous_wire", "level": "C1"},
                ]},
                "notes": ASSUMED + "operation year and diagnosis type. Published: posterior cervical arthrodesis "
                                   "with transarticular screws and interspinous wiring; solid fusion at 2 years.",
            },
            [{"local_ref": "LIT-8-AUERBACH-FU24", "months_after": 24, "fusion_status": "fused",
              "notes": "Solid posterior cervical arthrodesis"}],
        ),
        (  # Westerlund [12]: scoliosis, Luque rods, sublaminar wires and allograft
            {
                "local_ref": "LIT-12-WESTERLUND", **SILENT,
                "patient": {"ref": "LIT-12-P1", "diagnosis": "ado_ii", "consent": "active"},
                "operation_date": "1995-01-01", "date_precision": "year",
                "indication": "deformity", "region": "thoracolumbar", "approach": "posterior",
                "procedures": ["fusion", "deformity_correction"], "levels": {"from": "T4", "to": "L3"},
                "instrumentation": {"system": "Luque", "implants": [
                    {"kind": "rod", "side": "bilateral", "count": 2, "note": "Luque rods"},
                    {"kind": "sublaminar_wire", "side": "bilateral", "note": "Number not published"},
                ]},
                "bone_graft": ["other"],
                "notes": ASSUMED + "operation year, levels (T4–L3) and diagnosis type. Published: successful "
                                   "operative management of scoliosis with Luque rods, sublaminar wires and "
                                   "allograft bone augmentation (allograft type not given).",
            },
            [],
        ),
        (  # McCleary [14]: 15-year-old boy, upper cervical myelopathy, two-level laminectomy without fixation
            {
                "local_ref": "LIT-14-MCCLEARY", **SILENT,
                "patient": {"ref": "LIT-14-P1", "sex": "male", "birth_year": 1970, "diagnosis": "iro",
                            "diagnosis_note": "Congenital osteopetrosis with ventriculomegaly; three shunting "
                                              "procedures", "consent": "active"},
                "operation_date": "1985-01-01", "date_precision": "year",
                "indication": "spinal_stenosis", "indication_note": "Upper cervical myelopathy",
                "region": "cervical", "approach": "posterior",
                "procedures": ["laminectomy", "decompression_without_fusion"], "levels": {"from": "C1", "to": "C2"},
                "notes": ASSUMED + "operation year, levels (C1–C2) and recessive type. Published: 15-year-old boy; "
                                   "two-level laminectomy without fixation relieved the stenosis; neurological "
                                   "recovery was not full.",
            },
            [],
        ),
    ]
