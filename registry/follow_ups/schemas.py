"""Wire contract for follow-ups: many per operation, arriving months or years later."""

import marshmallow as ma

from registry import vocabulary as v
from registry.fields import Code, HalfPointScore, Integer, PastDate, Ref, StrictBoolean, Text
from registry.operations.schemas import score_list
from registry.validation import rules as record_rules


class FollowUpFieldsSchema(ma.Schema):
    local_ref = Ref(allow_none=True, metadata={"description": "Your own id for the follow-up: resubmitting it updates"})
    date = PastDate(metadata={"description": "Date of the follow-up; or give months_after"})
    months_after = Integer(0, 1200, metadata={"description": "Whole months after the operation; or give date"})
    fusion_status = Code(v.FUSION_STATUS, allow_none=True)
    bridwell_grade = Code(v.BRIDWELL_GRADE, allow_none=True, metadata={
        "description": "Bridwell fusion grade I–IV; I and II with fusion_status fused, III with indeterminate or "
                       "not_fused, IV with not_fused"})
    assessment = Code(v.ASSESSMENT, allow_none=True, metadata={"description": "How fusion was assessed"})
    implant_status = Code(v.IMPLANT_STATUS, allow_none=True)
    joa = HalfPointScore(17, allow_none=True, metadata={"description": "JOA 17-point score, 0–17 (legacy form of "
                                                                      "its entry in scores)"})
    mjoa = Integer(0, 18, allow_none=True, metadata={"description": "Modified JOA score, 0–18 (legacy form of its "
                                                                    "entry in scores)"})
    scores = score_list("Outcome scores at this follow-up, one per instrument; the JOA 17-point and mJOA entries "
                        "are also read and written as joa / mjoa")
    revision_surgery = StrictBoolean(allow_none=True, metadata={
        "description": "true, false, or null: not recorded (left out: not recorded)"})
    revision_reason = Text(500, allow_none=True)
    notes = Text(4000, allow_none=True)

    @ma.validates_schema
    def rules(self, data, **kwargs):  # by this name: the PATCH schema (routes) switches it off
        errors = (record_rules.follow_up_dated_and_revision_consistent(data)
                  | record_rules.bridwell_grade_agrees_with_fusion_status(data)
                  | record_rules.one_score_per_instrument(data.get("scores"), "scores")
                  | record_rules.scores_agree_with_legacy(data, data.get("scores"), ""))
        if errors:
            raise ma.ValidationError({field: [message] for field, message in errors.items()})


    @ma.post_load
    def scores_merged(self, data, **kwargs):
        """A loaded follow-up states its scores both ways: the full list, and joa / mjoa."""
        if "scores" in data or "joa" in data or "mjoa" in data:
            data["scores"] = record_rules.merged_scores(data, data.get("scores"))
            data.update(record_rules.legacy_scores(data["scores"]))
        return data


class FollowUpSchema(FollowUpFieldsSchema):
    id = ma.fields.Integer(dump_only=True)
    operation_id = ma.fields.Integer(dump_only=True)
    patient_id = ma.fields.Integer(dump_only=True)
    version = ma.fields.Integer(dump_only=True)
    created_at = ma.fields.DateTime(dump_only=True)
    updated_at = ma.fields.DateTime(dump_only=True)
