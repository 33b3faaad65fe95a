from duban.ops import serve
from services.notifier.app import create_app
from services.notifier.settings import NotifierSettings

settings = NotifierSettings()
serve(create_app(settings), settings)
