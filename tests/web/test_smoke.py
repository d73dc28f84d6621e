def test_pages_render(client, console):
    assert client.get("/").status_code == 200
    page = client.get("/console/")
    assert page.status_code == 200
    assert "New session" in page.text
    created = console.create_session("Ann")
    assert len(created["pin"]) == 6
