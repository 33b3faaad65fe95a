from duban.settings import ServiceSettings


class NotifierSettings(ServiceSettings):
    http_port: int = 8004
    schema_name: str = "notifier"
    consumer_group: str = "duban-notifier"
