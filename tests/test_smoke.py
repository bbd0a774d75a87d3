def test_an_authenticated_message_is_queued(smtp_server, account, run_cli):
    username, password = account
    with smtp_server.submission() as client:
        client.login(username, password)
        code, reply = client.docmd("MAIL FROM:<a@shop.test>")
        assert code == 250
        client.docmd("RCPT TO:<b@example.com>")
        code, reply = client.data(b"From: a@shop.test\r\nSubject: hi\r\n\r\nhello\r\n")
    assert code == 250
    assert reply.startswith(b"Ok: queued as ")
