"""Flask extensions, created unbound and initialised by the app factory."""

from flask_caching import Cache
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_login import LoginManager
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from flask_wtf.csrf import CSRFProtect

from server.domain.base import Base

db = SQLAlchemy(model_class=Base)
migrate = Migrate()
cache = Cache()
login_manager = LoginManager()
csrf = CSRFProtect()
# No default limits: public forms and login name their own.
limiter = Limiter(key_func=get_remote_address)
