FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md settings.py ./
COPY asyncjobs ./asyncjobs
COPY web ./web
RUN pip install --no-cache-dir .
ENV PYTHONUNBUFFERED=1
CMD ["asyncjobs", "worker"]
