from duban.ops import serve
from services.tracker.app import create_app
from services.tracker.settings import TrackerSettings

settings = TrackerSettings()
serve(create_app(settings), settings)
