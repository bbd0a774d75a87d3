"""Reply codes explained in plain words."""

from appliance.web.smtp_codes import explain


def test_the_enhanced_code_wins_over_the_basic_code():
    assert explain(550, "5.1.1").startswith("The mailbox does not exist")


def test_an_enhanced_code_is_found_in_the_reply_text_when_not_given():
    assert "mailbox is full" in explain(452, "", "4.2.2 Mailbox full, try later")


def test_a_basic_code_alone_is_explained():
    assert "greylisting" in explain(450)


def test_an_unlisted_code_falls_back_to_its_class():
    assert explain(499).startswith("A temporary failure")
    assert explain(599).startswith("A permanent failure")


def test_no_code_means_the_connection_failed():
    assert "connection failed" in explain(None)
