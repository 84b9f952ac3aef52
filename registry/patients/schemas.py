"""Wire contract for pseudonymous patients."""

import marshmallow as ma

from registry import vocabulary as v
from registry.fields import Code, Codes, Integer, Ref, StrictBoolean, Text
from registry.validation import rules


class PatientFieldsSchema(ma.Schema):
    """The clinical description of a patient, shared by the patient resource and operation documents."""

    sex = Code(v.SEX, allow_none=True)
    birth_year = Integer(1880, 2200, allow_none=True, metadata={"description": "Year only; no birth date is kept"})
    diagnosis = Code(v.DIAGNOSIS, required=True)
    diagnosis_note = Text(500, allow_none=True)
    genes = Codes(v.GENES, load_default=list)
    inheritance = Code(v.INHERITANCE, allow_none=True)
    family_history = StrictBoolean(allow_none=True)
    consent = Code(v.CONSENT, load_default="active",
                   metadata={"description": "`withdrawn` removes the patient from every report"})

    @ma.validates("birth_year")
    def birth_year_not_in_future(self, value, **kwargs):
        problem = rules.birth_year_not_in_future(value)
        if problem:
            raise ma.ValidationError(problem)


# The key under which a loaded inline patient lists the fields actually sent: a field left out
# (filled by its load_default, or absent) keeps the stored patient's value (patients.store).
SENT_FIELDS = "sent_fields"


class PatientInputSchema(PatientFieldsSchema):
    """A patient as a centre sends it: keyed by the centre's own `ref`."""

    ref = Ref(required=True, metadata={"description": "The centre's own patient identifier. The registry keeps "
                                                      "only a keyed hash of it and never shows it again."})

    @ma.post_load(pass_original=True)
    def remember_sent_fields(self, data, original, **kwargs):
        data[SENT_FIELDS] = frozenset(name for name in original if name in self.fields and name != "ref")
        return data


class PatientSchema(PatientFieldsSchema):
    """A stored patient. `ref` appears only in the reply to the request that sent it."""

    id = ma.fields.Integer(dump_only=True)
    ref = ma.fields.String(dump_only=True, metadata={"description": "Echoed only to the request that sent it"})
    version = ma.fields.Integer(dump_only=True)
    created_at = ma.fields.DateTime(dump_only=True)
    updated_at = ma.fields.DateTime(dump_only=True)


class PatientQuerySchema(ma.Schema):
    ref = Ref(metadata={"description": "Find the patient with this ref of yours (matched by its hash)"})
    diagnosis = Code(v.DIAGNOSIS)
    consent = Code(v.CONSENT)
    updated_since = ma.fields.AwareDateTime(metadata={"description": "Only patients changed at or after this time"})
