from duban.settings import ServiceSettings


class IntakeSettings(ServiceSettings):
    http_port: int = 8001
    max_batch_events: int = 500
