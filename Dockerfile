# One image for every batglitch entry point: the Lambda handlers (handler.app.plan / process /
# finalize) and the `batglitch` CLI (AWS Batch array jobs, any container runtime).
#
#   docker run IMAGE                             Lambda handler handler.app.process (default CMD)
#   docker run IMAGE handler.app.plan            another handler: first argument is module.function
#   docker run IMAGE process --manifest URL      CLI mode: anything else goes to `batglitch`
#                                                (--index defaults to AWS_BATCH_JOB_ARRAY_INDEX)
#
# Build args:
#   BASE_IMAGE      Python base of both stages (same interpreter in each). Pin it by digest for a
#                   reproducible, tamper-evident build: --build-arg
#                   BASE_IMAGE=public.ecr.aws/lambda/python:3.12@sha256:<digest> (the digest from
#                   `crane digest` / `docker buildx imagetools inspect`; the CDK app passes its
#                   `base_image` setting here). Default: the AWS Lambda
#                   Python base, whose /lambda-entrypoint.sh and bundled runtime client run the
#                   handlers (with the runtime interface emulator when started outside Lambda).
#                   Any image with python3 >= 3.12, pip and /bin/sh works too (scripts/base_image.sh
#                   makes a Debian one); without /lambda-entrypoint.sh, RUNTIME_CLIENT is
#                   installed to run the handlers (the Lambda base's own must not be shadowed).
#   RUNTIME_CLIENT  requirement for the Lambda runtime interface client on bases without one.
#   APP_UID         numeric user the image runs as (needs no passwd entry; Lambda picks its own).
#   PIP_CERT        CA bundle for pip in the builder, behind a TLS-inspecting proxy (mount it in
#                   with the build's --volume); unset: the base's own trust store.
#
# Dependencies are pinned by requirements.lock when the build context has one (pip constraints).
# Everything is installed from wheels built in the builder stage into /var/task, Lambda's task root.

ARG BASE_IMAGE=public.ecr.aws/lambda/python:3.12

FROM ${BASE_IMAGE} AS builder
ARG RUNTIME_CLIENT="awslambdaric>=3.0,<5"
ARG PIP_CERT
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
WORKDIR /build

# Wheels of all dependencies first, from pyproject.toml alone (an empty src/ stands in for the
# package), so editing the source does not download them again.
COPY pyproject.toml README.md requirements.lock* ./
RUN set -eu; \
    pins=; if [ -f requirements.lock ]; then pins="--constraint requirements.lock"; fi; \
    set --; if [ ! -x /lambda-entrypoint.sh ]; then set -- "$RUNTIME_CLIENT"; fi; \
    mkdir -p src; \
    python3 -m pip wheel --prefer-binary --wheel-dir /wheels $pins ".[aws,swift]" "$@"; \
    rm /wheels/batglitch-*.whl

COPY src ./src
# The wheel directory now holds exactly the resolved set: install it, and nothing else, offline.
# pip compiles the .pyc files here because Lambda's file system is read-only at run time.
# The libraries' own test suites are ~100 MB that nothing imports, except astropy/tests (astropy
# imports its test runner at import time); Python removes them since a base may lack `find`.
RUN set -eu; \
    python3 -m pip wheel --no-deps --wheel-dir /wheels .; \
    python3 -m pip install --no-index --no-deps --target /var/task /wheels/*.whl; \
    python3 -c 'import pathlib, shutil; keep = pathlib.Path("/var/task/astropy/tests"); \
        [shutil.rmtree(p, ignore_errors=True) for p in list(pathlib.Path("/var/task").rglob("tests")) \
         if p.is_dir() and p != keep]'; \
    printf '%s\n' \
        '#!/bin/sh' \
        '# Lambda mode when the first argument names a handler (module.function), CLI otherwise.' \
        'case "$1" in' \
        '  -* | "") exec batglitch "$@" ;;' \
        '  *.*)' \
        '    if [ -x /lambda-entrypoint.sh ]; then exec /lambda-entrypoint.sh "$@"; fi' \
        '    if [ -z "$AWS_LAMBDA_RUNTIME_API" ]; then' \
        '      echo "handler $1 needs AWS_LAMBDA_RUNTIME_API; give a batglitch subcommand instead" >&2' \
        '      exit 64' \
        '    fi' \
        '    exec python3 -m awslambdaric "$@" ;;' \
        '  *) exec batglitch "$@" ;;' \
        'esac' \
        > /var/task/bin/batglitch-entrypoint; \
    chmod 0755 /var/task/bin/batglitch-entrypoint

COPY handler /var/task/handler
RUN python3 -m compileall -q /var/task/handler

# No compilers, pip caches or wheels: only the installed tree and the thin handler package.
FROM ${BASE_IMAGE}
ARG APP_UID=65532
# HOME=/tmp: the only writable place on Lambda; swifttools and astropy write caches under $HOME.
ENV LAMBDA_TASK_ROOT=/var/task PYTHONPATH=/var/task PATH=/var/task/bin:$PATH HOME=/tmp \
    PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
COPY --from=builder /var/task /var/task
WORKDIR /var/task
USER ${APP_UID}
ENTRYPOINT ["/var/task/bin/batglitch-entrypoint"]
CMD ["handler.app.process"]
