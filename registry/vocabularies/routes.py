"""Every controlled code with its human label, for forms and integration mapping."""

import marshmallow as ma
from flask.views import MethodView
from flask_smorest import Blueprint

from registry import vocabulary

blp = Blueprint("vocabularies", __name__, url_prefix="/v1/vocabularies",
                description="Controlled vocabularies (no token needed)")


class TermSchema(ma.Schema):
    code = ma.fields.String(required=True)
    label = ma.fields.String(required=True)


VocabulariesSchema = ma.Schema.from_dict(
    {name: ma.fields.List(ma.fields.Nested(TermSchema), required=True) for name in vocabulary.ALL},
    name="Vocabularies")


@blp.route("/")
class Vocabularies(MethodView):
    @blp.response(200, VocabulariesSchema)
    def get(self):
        """List every controlled vocabulary with its codes and labels"""
        return {name: [{"code": code, "label": label} for code, label in terms.items()]
                for name, terms in vocabulary.ALL.items()}
