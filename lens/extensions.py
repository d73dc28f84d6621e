"""The unbound extension objects; the app factory binds them."""

from flask_babel import Babel
from flask_compress import Compress
from flask_limiter import Limiter
from flask_login import LoginManager
from flask_mail import Mail
from flask_migrate import Migrate
from flask_sock import Sock
from flask_sqlalchemy import SQLAlchemy
from flask_wtf import CSRFProtect
from sqlalchemy.orm import DeclarativeBase

from lens.security.addresses import client_key


class Base(DeclarativeBase):
    """Declarative base shared by every model."""


db = SQLAlchemy(model_class=Base)
migrate = Migrate()
login_manager = LoginManager()
csrf = CSRFProtect()
# HTTP limits count an IPv4 address or an IPv6 /64, as the sockets' caps do
limiter = Limiter(key_func=client_key)
babel = Babel()
sock = Sock()
mail = Mail()
# the customer's pages only (lens.assets says why); static files are compressed by lens.assets
compress = Compress()
