"""The OpenAPI document, generated from the code (flask-smorest) and committed as openapi.yaml."""

import yaml

from registry import create_app
from registry.config import Settings

# The document does not depend on the database: the pool is never opened while writing it.
_NO_DATABASE = "postgresql://openapi.invalid/registry"


def openapi_document() -> dict:
    app = create_app(Settings(registry_secret=b"openapi-generation-only"), database_url=_NO_DATABASE)
    with app.app_context():
        return app.extensions["registry_api"].spec.to_dict()


def openapi_yaml() -> str:
    return yaml.safe_dump(openapi_document(), sort_keys=True, allow_unicode=True, width=100)
