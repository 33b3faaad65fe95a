from duban.ops import serve
from services.metrics.app import create_app
from services.metrics.settings import MetricsSettings

settings = MetricsSettings()
serve(create_app(settings), settings)
