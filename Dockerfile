# One image for every imori service (worker, GPU worker, dashboard); docker-compose.yml
# picks the command. torch's wheels carry their CUDA libraries, so the same image trains
# on a GPU when the container is given one.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY core ./core
COPY worker ./worker
COPY dashboard ./dashboard
RUN pip install --no-cache-dir .
ENV IMORI_HOME=/data
EXPOSE 8501
CMD ["imori", "up", "--host", "0.0.0.0"]
