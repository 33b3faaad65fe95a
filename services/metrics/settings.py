from duban.settings import ServiceSettings


class MetricsSettings(ServiceSettings):
    http_port: int = 8003
    schema_name: str = "metrics"
    consumer_group: str = "duban-metrics"
