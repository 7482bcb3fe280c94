"""Who is asking: an API token (`Authorization: Bearer fbt_...`, for the API and fbtool) or a
session cookie (the page). Every read route asks through here; nobody is anonymous."""
from starlette.exceptions import HTTPException

from cloud import accounts

COOKIE = "fleetbox_session"


class Unauthenticated(HTTPException):
    def __init__(self):
        super().__init__(401, "unauthenticated", headers={"www-authenticate": 'Bearer realm="fleetbox"'})


def caller(request, conn):
    """The signed-in User of the request, or None. A bearer token wins over a cookie."""
    header = request.headers.get("authorization", "")
    if header[:7].lower() == "bearer ":
        return accounts.user_for(conn, header[7:].strip(), "token")
    cookie = request.cookies.get(COOKIE)
    if cookie:
        return accounts.user_for(conn, cookie, "session")
    return None


def require(request, conn, permission=None):
    """The caller, or 401 (nobody signed in) / 403 (the role may not do `permission`)."""
    user = caller(request, conn)
    if user is None:
        raise Unauthenticated()
    if permission and not user.may(permission):
        raise HTTPException(403, "forbidden")
    return user
