# The registry service: gunicorn serving the app, PostgreSQL elsewhere (DATABASE_URL).
# docker-compose.yml builds this image and runs it twice: `registry db upgrade` once, then
# the default command. Run alone, it needs DATABASE_URL and REGISTRY_SECRET:
#   docker run -e DATABASE_URL=postgresql://... -e REGISTRY_SECRET=... -p 8000:8000 IMAGE
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# A non-root user with a home directory (gunicorn's control socket is off unless
# REGISTRY_CONTROL_SOCKET names a path for it).
RUN useradd --create-home --uid 10001 --user-group registry \
 && mkdir -p /run/registry-metrics \
 && chown registry:registry /run/registry-metrics

WORKDIR /app
COPY pyproject.toml README.md ./
COPY registry ./registry
COPY migrations ./migrations
# Editable, so the package stays in /app beside migrations/: registry/migrate.py finds the
# migrations next to the package, which an install into site-packages would leave behind.
RUN pip install -e .

USER 10001
# Production refuses to start without DATABASE_URL and REGISTRY_SECRET rather than fall
# back to an embedded PostgreSQL inside the container.
ENV REGISTRY_ENV=production \
    REGISTRY_BIND=0.0.0.0:8000 \
    PROMETHEUS_MULTIPROC_DIR=/run/registry-metrics
EXPOSE 8000
CMD ["gunicorn", "-c", "python:registry.gunicorn_conf", "registry:create_app()"]
