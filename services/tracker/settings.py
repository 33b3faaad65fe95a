from duban.settings import ServiceSettings


class TrackerSettings(ServiceSettings):
    http_port: int = 8002
    schema_name: str = "tracker"
    consumer_group: str = "duban-tracker"
    batch_size: int = 500
