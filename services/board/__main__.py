from duban.ops import serve
from services.board.app import create_app
from services.board.settings import BoardSettings

settings = BoardSettings()
serve(create_app(settings), settings)
