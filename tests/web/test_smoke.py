import re


def test_pages_render(client, console):
    assert client.get("/").status_code == 200
    page = client.get("/console/")
    assert page.status_code == 200
    assert "New session" in page.text
    created = console.create_session("Ann")
    assert len(created["pin"]) == 6


def test_favicon_ico_leads_to_the_sites_icon(client):
    response = client.get("/favicon.ico")
    assert response.status_code == 301
    icon = client.get(response.headers["Location"])
    assert icon.status_code == 200
    assert icon.mimetype == "image/svg+xml"


def test_a_rows_link_opens_the_console_with_that_session(client, console):
    created = console.create_session("Keyboard Kim")
    page = client.get("/console/").text
    link = re.search(r'<a class="row-open" href="([^"]+)">Keyboard Kim</a>', page)
    assert link, "the row has no link to reach with Tab"
    opened = client.get(link.group(1).replace("&amp;", "&"))
    assert opened.status_code == 200
    detail = re.search(r'data-open="(/console/sessions/(\d+))"', opened.text)
    assert detail, "the console does not open the session"
    assert client.get(detail.group(1), headers={"HX-Request": "true"}).status_code == 200
    assert created["pin"]
    # someone else's or no such session: not found
    assert client.get("/console/?session=999999").status_code == 404
