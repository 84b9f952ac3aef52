"""Every controlled code the registry knows, with its human label.

One source for the marshmallow schemas (OneOf validators), the `/v1/vocabularies` endpoint
and the database CHECK constraints. Migrations freeze the lists they were written with; the
test `test_database_checks_match_vocabulary` fails when this module and the schema disagree,
which is the cue to write a migration.
"""

from types import MappingProxyType


def _vocabulary(*pairs: tuple[str, str]) -> MappingProxyType:
    return MappingProxyType(dict(pairs))


SEX = _vocabulary(("male", "Male"), ("female", "Female"), ("other", "Other"), ("unknown", "Unknown"))

DIAGNOSIS = _vocabulary(
    ("ado_ii", "Autosomal dominant osteopetrosis type II (Albers-Schönberg)"),
    ("aro", "Autosomal recessive (malignant infantile) osteopetrosis"),
    ("iro", "Intermediate autosomal recessive osteopetrosis"),
    ("pycnodysostosis", "Pycnodysostosis"),
    ("melorheostosis", "Melorheostosis"),
    ("osteopoikilosis", "Osteopoikilosis"),
    ("camurati_engelmann", "Camurati-Engelmann disease"),
    ("sclerosteosis", "Sclerosteosis"),
    ("van_buchem", "Van Buchem disease"),
    ("other_sclerosing", "Other sclerosing bone disorder"),
)

GENES = _vocabulary(
    ("CLCN7", "CLCN7"), ("TCIRG1", "TCIRG1"), ("OSTM1", "OSTM1"), ("TNFSF11", "TNFSF11 (RANKL)"),
    ("TNFRSF11A", "TNFRSF11A (RANK)"), ("CA2", "CA2"), ("PLEKHM1", "PLEKHM1"), ("SNX10", "SNX10"),
    ("CTSK", "CTSK"), ("SOST", "SOST"), ("LRP5", "LRP5"), ("LEMD3", "LEMD3"), ("TGFB1", "TGFB1"),
    ("other", "Other gene"),
)

INHERITANCE = _vocabulary(
    ("autosomal_dominant", "Autosomal dominant"),
    ("autosomal_recessive", "Autosomal recessive"),
    ("x_linked", "X-linked"),
    ("sporadic", "Sporadic / de novo"),
    ("unknown", "Unknown"),
)

DATE_PRECISION = _vocabulary(
    ("day", "Exact date"), ("month", "Month known (date is its first day)"),
    ("year", "Year known (date is 1 January)"),
)

CONSENT = _vocabulary(("active", "Consent active"), ("withdrawn", "Consent withdrawn"))

INDICATION = _vocabulary(
    ("cervical_spondylotic_myelopathy", "Cervical spondylotic myelopathy"),
    ("radiculopathy", "Radiculopathy"),
    ("spinal_stenosis", "Spinal stenosis"),
    ("spondylolysis", "Spondylolysis"),
    ("spondylolisthesis", "Spondylolisthesis"),
    ("fracture", "Fracture"),
    ("instability", "Instability"),
    ("deformity", "Deformity / scoliosis"),
    ("pseudarthrosis", "Pseudarthrosis / non-union"),
    ("infection", "Infection / osteomyelitis"),
    ("tumour", "Tumour"),
    ("arthritis", "Arthritis"),
    ("other", "Other"),
)

REGION = _vocabulary(
    ("craniocervical", "Craniocervical junction"),
    ("cervical", "Cervical spine"),
    ("cervicothoracic", "Cervicothoracic spine"),
    ("thoracic", "Thoracic spine"),
    ("thoracolumbar", "Thoracolumbar spine"),
    ("lumbar", "Lumbar spine"),
    ("lumbosacral", "Lumbosacral spine"),
    ("sacropelvic", "Sacrum and pelvis"),
    ("hip", "Hip"),
    ("femur", "Femur"),
    ("knee", "Knee"),
    ("tibia", "Tibia"),
    ("upper_limb", "Upper limb"),
    ("skull", "Skull"),
    ("other", "Other"),
)

# Regions on the spinal column: an operation there must name its levels.
SPINAL_REGIONS = frozenset(
    {"craniocervical", "cervical", "cervicothoracic", "thoracic", "thoracolumbar", "lumbar",
     "lumbosacral", "sacropelvic"}
)

APPROACH = _vocabulary(
    ("anterior", "Anterior"), ("posterior", "Posterior"), ("combined", "Combined anterior-posterior"),
    ("lateral", "Lateral"), ("percutaneous", "Percutaneous"),
)

PROCEDURE = _vocabulary(
    ("laminectomy", "Laminectomy"),
    ("laminoplasty", "Laminoplasty"),
    ("laminotomy", "Laminotomy / foraminotomy"),
    ("discectomy", "Discectomy"),
    ("corpectomy", "Corpectomy"),
    ("fusion", "Fusion / arthrodesis"),
    ("decompression_without_fusion", "Decompression without fusion"),
    ("fracture_fixation", "Fracture fixation"),
    ("osteotomy", "Osteotomy"),
    ("deformity_correction", "Deformity correction"),
    ("arthroplasty", "Arthroplasty"),
    ("implant_removal", "Implant removal"),
    ("revision", "Revision surgery"),
    ("other", "Other"),
)

# The spinal column in order; levels are ranges on it. OC (occiput) and pelvis are fixation
# points, not vertebrae: they count as segments but not as vertebrae.
SPINAL_LEVELS = (
    "OC",
    "C1", "C2", "C3", "C4", "C5", "C6", "C7",
    "T1", "T2", "T3", "T4", "T5", "T6", "T7", "T8", "T9", "T10", "T11", "T12",
    "L1", "L2", "L3", "L4", "L5",
    "S1", "S2",
    "pelvis",
)
SPINAL_LEVEL = _vocabulary(*((level, level) for level in SPINAL_LEVELS))
NON_VERTEBRAL_LEVELS = frozenset({"OC", "pelvis"})

IMPLANT_KIND = _vocabulary(
    ("lateral_mass_screw", "Lateral mass screw"),
    ("pedicle_screw", "Pedicle screw"),
    ("transarticular_screw", "Transarticular screw"),
    ("laminar_screw", "Laminar screw"),
    ("odontoid_screw", "Odontoid screw"),
    ("rod", "Rod"),
    ("plate", "Plate"),
    ("cage", "Cage"),
    ("sublaminar_wire", "Sublaminar wire"),
    ("interspinous_wire", "Interspinous wire"),
    ("hook", "Hook"),
    ("nail", "Intramedullary nail"),
    ("other", "Other"),
)

SIDE = _vocabulary(("left", "Left"), ("right", "Right"), ("bilateral", "Bilateral"), ("midline", "Midline"))

BONE_GRAFT = _vocabulary(
    ("local_autograft", "Local autograft"),
    ("iliac_autograft", "Iliac crest autograft"),
    ("rib_autograft", "Rib autograft"),
    ("cancellous_allograft", "Cancellous allograft"),
    ("structural_allograft", "Structural allograft"),
    ("demineralized_bone_matrix", "Demineralised bone matrix"),
    ("bone_substitute", "Synthetic bone substitute"),
    ("bmp", "Bone morphogenetic protein"),
    ("none", "No graft"),
    ("other", "Other"),
)

IMMOBILIZATION = _vocabulary(
    ("none", "None"),
    ("soft_collar", "Soft collar"),
    ("philadelphia_collar", "Philadelphia collar"),
    ("rigid_collar", "Other rigid collar"),
    ("halo_vest", "Halo vest"),
    ("minerva", "Minerva brace"),
    ("tlso", "Thoracolumbosacral orthosis"),
    ("lso", "Lumbosacral orthosis"),
    ("cast", "Cast"),
    ("other", "Other"),
)

INTRAOP_EVENT = _vocabulary(
    ("instrument_breakage", "Instrument breakage"),
    ("iatrogenic_fracture", "Iatrogenic fracture"),
    ("dural_tear", "Dural tear"),
    ("excessive_bleeding", "Excessive bleeding"),
    ("neuromonitoring_change", "Neuromonitoring change"),
    ("nerve_injury", "Nerve root or spinal cord injury"),
    ("vascular_injury", "Vascular injury"),
    ("implant_malposition", "Implant malposition"),
    ("wrong_level", "Wrong level"),
    ("other", "Other"),
)

INSTRUMENT = _vocabulary(
    ("drill_bit", "Drill bit"), ("tap", "Tap"), ("screw", "Screw"), ("burr", "Burr"),
    ("kerrison", "Kerrison rongeur"), ("other", "Other instrument"),
)

# Where on the vertebra an event happened (the seed's drill bit broke in the lateral mass).
ANATOMIC_SITE = _vocabulary(
    ("lateral_mass", "Lateral mass"), ("pedicle", "Pedicle"), ("lamina", "Lamina"),
    ("spinous_process", "Spinous process"), ("facet", "Facet joint"),
    ("vertebral_body", "Vertebral body"), ("dens", "Dens"), ("disc", "Intervertebral disc"),
    ("other", "Other"),
)

CLASSINTRA_GRADE = _vocabulary(
    ("I", "ClassIntra I: no deviation from the ideal course"),
    ("II", "ClassIntra II: minor treatment needed"),
    ("III", "ClassIntra III: moderate treatment needed"),
    ("IV", "ClassIntra IV: major treatment, life-threatening"),
    ("V", "ClassIntra V: death of the patient"),
)

POSTOP_COMPLICATION = _vocabulary(
    ("wound_infection", "Superficial wound infection"),
    ("deep_infection", "Deep infection"),
    ("haematoma", "Haematoma"),
    ("c5_palsy", "C5 palsy"),
    ("csf_leak", "CSF leak"),
    ("dysphagia", "Dysphagia"),
    ("neurological_deterioration", "Neurological deterioration"),
    ("implant_failure", "Implant failure"),
    ("vte", "Venous thromboembolism"),
    ("death", "Death"),
    ("other", "Other"),
)

CLAVIEN_DINDO_GRADE = _vocabulary(
    ("I", "Clavien-Dindo I"), ("II", "Clavien-Dindo II"), ("IIIa", "Clavien-Dindo IIIa"),
    ("IIIb", "Clavien-Dindo IIIb"), ("IVa", "Clavien-Dindo IVa"), ("IVb", "Clavien-Dindo IVb"),
    ("V", "Clavien-Dindo V"),
)
# Clavien-Dindo IIIa or worse is a "major" complication in the reports.
MAJOR_CLAVIEN_DINDO = frozenset({"IIIa", "IIIb", "IVa", "IVb", "V"})

# Spine Adverse Events Severity system, version 2 (SAVES-V2: Rampersaud et al., J Neurosurg Spine
# 2016;25:256-263), for intra- and postoperative events alike; labels abridged from its form.
SAVES_VERSION = "SAVES-V2"
SAVES_GRADE = _vocabulary(
    ("1", "SAVES-V2 1: no treatment needed, no adverse effect on outcome"),
    ("2", "SAVES-V2 2: simple or minor treatment, no lasting adverse effect"),
    ("3", "SAVES-V2 3: invasive treatment or prolonged care, adverse effect resolved"),
    ("4", "SAVES-V2 4: invasive treatment, adverse effect lasting up to 6 months"),
    ("5", "SAVES-V2 5: significant neurological deficit or adverse effect beyond 6 months"),
    ("6", "SAVES-V2 6: death"),
)

FUSION_STATUS = _vocabulary(
    ("fused", "Fused"),
    ("not_fused", "Not fused / pseudarthrosis"),
    ("indeterminate", "Indeterminate"),
    ("not_assessed", "Not assessed"),
)

# Bridwell fusion grades (Bridwell et al., Spine 1995;20:1410), read beside fusion_status: the
# statuses each grade allows (BRIDWELL_FUSION_STATUS, a validation rule).
BRIDWELL_GRADE = _vocabulary(
    ("I", "Bridwell I: fused, remodelled, with trabeculae"),
    ("II", "Bridwell II: graft intact, not fully remodelled, no lucent line"),
    ("III", "Bridwell III: graft intact, a lucent line or possible pseudarthrosis at one end"),
    ("IV", "Bridwell IV: fusion absent, graft collapsed or resorbed"),
)
BRIDWELL_FUSION_STATUS = MappingProxyType({
    "I": ("fused",), "II": ("fused",), "III": ("indeterminate", "not_fused"), "IV": ("not_fused",)})

# Outcome scores: each instrument with the versions (scales) it exists in. A value is read on
# its version's scale; the JOA recovery rate is computed only between the same version.
SCORE_INSTRUMENT = _vocabulary(
    ("joa", "JOA score (Japanese Orthopaedic Association): 17-point cervical or 29-point lumbar"),
    ("mjoa", "Modified JOA score (Benzel 1991), 0-18"),
    ("ndi", "Neck Disability Index: 0-50 points or 0-100 %"),
    ("odi", "Oswestry Disability Index, 0-100 %"),
    ("eq5d5l_index", "EQ-5D-5L index value (value set named)"),
    ("pain_nrs", "Pain numeric rating scale, 0-10"),
)
SCORE_VERSION = _vocabulary(
    ("17-point", "JOA 17-point (cervical myelopathy; half points allowed)"),
    ("29-point", "JOA 29-point (low back pain; -6 to 29)"),
    ("18-point", "mJOA 18-point"),
    ("50-point", "NDI in points, 0-50"),
    ("percent", "NDI as a percentage, 0-100"),
    ("2.0", "ODI version 2.0"),
    ("2.1a", "ODI version 2.1a"),
    ("5L", "EQ-5D-5L"),
    ("11-point", "NRS 0-10"),
)
# (instrument, version) -> (minimum, maximum, step: None when any value), and per instrument the
# version filled in when left out (None: the version must be given, its scales differ; or, for
# ODI, whose versions share one scale, left out means not recorded).
SCORE_SCALES = MappingProxyType({
    ("joa", "17-point"): (0, 17, 0.5), ("joa", "29-point"): (-6, 29, 1),
    ("mjoa", "18-point"): (0, 18, 1),
    ("ndi", "50-point"): (0, 50, 1), ("ndi", "percent"): (0, 100, None),
    ("odi", "2.0"): (0, 100, None), ("odi", "2.1a"): (0, 100, None), ("odi", None): (0, 100, None),
    ("eq5d5l_index", "5L"): (-1, 1, None),
    ("pain_nrs", "11-point"): (0, 10, 1),
})
# Where a pain NRS was scored: neck and arm pain, back and leg pain are separate outcomes. Records
# stored before the site existed may hold a pain NRS without one (site unknown).
PAIN_SITE = _vocabulary(
    ("neck", "Neck pain"),
    ("arm", "Arm pain"),
    ("back", "Back pain"),
    ("leg", "Leg pain"),
)
SCORE_DEFAULT_VERSION = MappingProxyType({"mjoa": "18-point", "eq5d5l_index": "5L", "pain_nrs": "11-point"})
# EQ-5D-5L value sets: an index means nothing without the country tariff that produced it.
EQ5D_VALUE_SET = _vocabulary(
    ("england", "England (Devlin et al. 2018)"),
    ("us", "United States (Pickard et al. 2019)"),
    ("germany", "Germany (Ludwig et al. 2018)"),
    ("netherlands", "Netherlands (Versteegh et al. 2016)"),
    ("japan", "Japan (Shiroiwa et al. 2016)"),
    ("china", "China (Luo et al. 2017)"),
    ("canada", "Canada (Xie et al. 2016)"),
    ("spain", "Spain (Ramos-Goni et al. 2018)"),
    ("korea", "South Korea (Kim et al. 2016)"),
    ("uk_crosswalk", "UK 3L crosswalk (van Hout et al. 2012)"),
)

ASSESSMENT = _vocabulary(("xray", "Plain radiograph"), ("ct", "CT"), ("mri", "MRI"), ("clinical", "Clinical"))

IMPLANT_STATUS = _vocabulary(
    ("intact", "Intact"), ("loosening", "Loosening"), ("migration", "Migration"),
    ("breakage", "Breakage"), ("removed", "Removed"),
)
IMPLANT_FAILURE_STATUSES = frozenset({"loosening", "migration", "breakage"})

# Who reported an intraoperative event or a postoperative complication: registries found that
# surgeons' own reports miss a third or more of what patients, chart review or claims reveal
# (Swespine, NORspine), so a rate is read beside its source.
REPORTED_BY = _vocabulary(
    ("surgeon", "Surgeon (operating team)"),
    ("other_clinician", "Other clinician"),
    ("patient_reported", "Patient-reported"),
    ("chart_review", "Chart review"),
    ("other_registry", "Another registry"),
    ("claims", "Claims or administrative data"),
)

# Whether a list of the record (intraoperative events, postoperative complications) was
# assessed: "none occurred" and "not recorded" are different answers (NSQIP's lesson: an empty
# list read as "none" makes every rate confidently wrong).
RECORDING_STATUS = _vocabulary(
    ("none", "Assessed: none occurred"),
    ("occurred", "Assessed: at least one occurred (listed)"),
    ("not_recorded", "Not recorded: unknown whether any occurred"),
)

ROLE = _vocabulary(
    ("submitter", "Centre submitter: reads and writes its own centre's records"),
    ("centre_admin", "Centre administrator: issues and revokes its own centre's submitter and centre_admin tokens"),
    ("analyst", "Analyst: reads aggregate reports across centres"),
    ("operator", "Registry operator: manages centres and analyst, operator and metrics tokens; no patient data"),
    ("metrics", "Metrics scraper: reads /metrics only"),
)

# Every vocabulary by its wire name, as `/v1/vocabularies` lists them.
ALL = MappingProxyType({
    "sex": SEX,
    "diagnosis": DIAGNOSIS,
    "genes": GENES,
    "inheritance": INHERITANCE,
    "consent": CONSENT,
    "date_precision": DATE_PRECISION,
    "indication": INDICATION,
    "region": REGION,
    "approach": APPROACH,
    "procedure": PROCEDURE,
    "spinal_level": SPINAL_LEVEL,
    "implant_kind": IMPLANT_KIND,
    "side": SIDE,
    "bone_graft": BONE_GRAFT,
    "immobilization": IMMOBILIZATION,
    "intraop_event": INTRAOP_EVENT,
    "instrument": INSTRUMENT,
    "anatomic_site": ANATOMIC_SITE,
    "classintra_grade": CLASSINTRA_GRADE,
    "postop_complication": POSTOP_COMPLICATION,
    "clavien_dindo_grade": CLAVIEN_DINDO_GRADE,
    "saves_grade": SAVES_GRADE,
    "bridwell_grade": BRIDWELL_GRADE,
    "score_instrument": SCORE_INSTRUMENT,
    "score_version": SCORE_VERSION,
    "eq5d_value_set": EQ5D_VALUE_SET,
    "pain_site": PAIN_SITE,
    "fusion_status": FUSION_STATUS,
    "assessment": ASSESSMENT,
    "implant_status": IMPLANT_STATUS,
    "recording_status": RECORDING_STATUS,
    "reported_by": REPORTED_BY,
    "role": ROLE,
})


def level_position(level: str) -> int:
    """Position of a level on the spinal column (OC is 0)."""
    return SPINAL_LEVELS.index(level)


def level_counts(level_from: str, level_to: str) -> tuple[int, int]:
    """Vertebrae and segments spanned by a range: C3–C6 is 4 vertebrae, 3 segments."""
    span = SPINAL_LEVELS[level_position(level_from): level_position(level_to) + 1]
    vertebrae = sum(1 for level in span if level not in NON_VERTEBRAL_LEVELS)
    return vertebrae, len(span) - 1
