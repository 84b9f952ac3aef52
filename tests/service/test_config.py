import pytest

from registry.config import ConfigurationError, Settings


def test_defaults_to_development_with_embedded_database(tmp_path):
    settings = Settings.from_environment({"REGISTRY_DATA_DIR": str(tmp_path)})
    assert settings.environment == "development"
    assert settings.database_url is None


def test_development_secret_is_generated_once_and_kept(tmp_path):
    first = Settings.from_environment({"REGISTRY_DATA_DIR": str(tmp_path)})
    second = Settings.from_environment({"REGISTRY_DATA_DIR": str(tmp_path)})
    assert len(first.registry_secret) >= 32
    assert first.registry_secret == second.registry_secret


@pytest.mark.parametrize("environ, message", [
    ({"REGISTRY_ENV": "production", "DATABASE_URL": "postgresql://db/registry"}, "REGISTRY_SECRET is required"),
    ({"REGISTRY_ENV": "production", "REGISTRY_SECRET": "s" * 32}, "DATABASE_URL is required"),
    ({"DATABASE_URL": "mysql://db/registry"}, "DATABASE_URL must be a postgresql:// URL"),
    ({"DATABASE_URL": "postgresql://db/registry?sslmode=x y z=="}, "not a valid PostgreSQL URL"),
    ({"REGISTRY_SECRET": "short"}, "at least 16 characters"),
    ({"DB_POOL_MAX_SIZE": "many"}, "DB_POOL_MAX_SIZE must be an integer"),
    ({"DB_POOL_MIN_SIZE": "20", "DB_POOL_MAX_SIZE": "5"}, "exceeds DB_POOL_MAX_SIZE"),
    ({"SUPPRESSION_THRESHOLD": "0"}, "SUPPRESSION_THRESHOLD must be between"),
    ({"LOG_LEVEL": "chatty"}, "LOG_LEVEL must be"),
    ({"REGISTRY_ENV": "staging"}, "REGISTRY_ENV must be one of"),
    ({"REGISTRY_VALIDATION_WORKERS": "-1"}, "REGISTRY_VALIDATION_WORKERS must be between"),
    ({"REPORT_TIMEOUT": "0"}, "REPORT_TIMEOUT must be between"),
    ({"REPORT_TIMEOUT": "soon"}, "REPORT_TIMEOUT must be a number"),
    ({"DASHBOARD_SECURE_COOKIE": "yes"}, "DASHBOARD_SECURE_COOKIE must be true or false"),
    ({"REPORTS_MAX_LAG_SECONDS": "-1"}, "REPORTS_MAX_LAG_SECONDS must be between"),
    ({"REPORTS_MAX_LAG_SECONDS": "a while"}, "REPORTS_MAX_LAG_SECONDS must be a number"),
    ({"REPORTS_DATABASE_URL": "mysql://replica/registry"}, "REPORTS_DATABASE_URL must be a postgresql:// URL"),
])
def test_unusable_configuration_is_refused_with_a_clear_message(tmp_path, environ, message):
    with pytest.raises(ConfigurationError, match=message):
        Settings.from_environment({"REGISTRY_DATA_DIR": str(tmp_path), **environ})


def test_prepared_statements_can_be_disabled_for_pgbouncer(tmp_path):
    settings = Settings.from_environment({"REGISTRY_DATA_DIR": str(tmp_path), "DB_PREPARE_THRESHOLD": "-1"})
    assert settings.prepare_threshold is None


def test_bulk_validation_uses_one_process_per_cpu_unless_configured(tmp_path):
    assert Settings.from_environment({"REGISTRY_DATA_DIR": str(tmp_path)}).validation_workers is None
    settings = Settings.from_environment({"REGISTRY_DATA_DIR": str(tmp_path), "REGISTRY_VALIDATION_WORKERS": "0"})
    assert settings.validation_workers == 0


def test_reports_read_a_replica_only_while_it_is_at_most_30_seconds_behind_unless_configured(tmp_path):
    assert Settings.from_environment({"REGISTRY_DATA_DIR": str(tmp_path)}).reports_max_lag_seconds == 30
    settings = Settings.from_environment({"REGISTRY_DATA_DIR": str(tmp_path), "REPORTS_MAX_LAG_SECONDS": "2.5"})
    assert settings.reports_max_lag_seconds == 2.5


def test_the_dashboard_cookie_is_secure_as_configured_else_in_production_only(tmp_path):
    base = {"REGISTRY_DATA_DIR": str(tmp_path)}
    assert Settings.from_environment(base).dashboard_secure_cookie is None
    assert Settings.from_environment({**base, "DASHBOARD_SECURE_COOKIE": "false"}).dashboard_secure_cookie is False
    assert Settings.from_environment({**base, "DASHBOARD_SECURE_COOKIE": "TRUE"}).dashboard_secure_cookie is True
