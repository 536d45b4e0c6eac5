# The operator's image: `make image` (needs Docker or Podman; nothing in `make test` depends on it).
# Multi-stage: wheels are built with the pinned constraints, the runtime is a slim Python without
# build tools, runs as a non-root user and works on a read-only root filesystem (/tmp is a volume).
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml constraints.txt README.md ./
COPY operator ./operator
RUN pip wheel --no-cache-dir --wheel-dir /wheels -c constraints.txt .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links /wheels trigger-operator && rm -rf /wheels \
    && useradd --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin operator
USER 10001:10001
EXPOSE 8080
ENTRYPOINT ["trigger-operator"]
CMD ["run"]
