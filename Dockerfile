# Production image: `docker run -e CHATGATE_DATABASE_URL=... -p 8080:8080 chatgate`
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY bots bots
COPY gateway gateway
COPY storage storage
COPY flows flows
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    CHATGATE_HTTP_HOST=0.0.0.0 \
    CHATGATE_HTTP_PORT=8080 \
    CHATGATE_LOG_JSON=1 \
    CHATGATE_DATABASE_URL=sqlite+aiosqlite:////data/chatgate.db
RUN useradd --system --create-home --uid 10001 chatgate \
    && mkdir /data && chown chatgate /data
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER chatgate
WORKDIR /home/chatgate
VOLUME ["/data"]
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD python -c "import os,sys,urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('CHATGATE_HTTP_PORT','8080'), timeout=4).status == 200 else 1)"
ENTRYPOINT ["chatgate"]
CMD ["run"]
