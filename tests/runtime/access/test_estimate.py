from runtime.access.estimate import estimate_tokens


def test_text_is_about_four_characters_a_token() -> None:
    body = {"model": "tiny", "messages": [{"role": "user", "content": "x" * 40}]}
    assert estimate_tokens(body) == 10


def test_token_ids_count_as_they_are_and_data_urls_not_at_all() -> None:
    assert estimate_tokens({"prompt": [1, 2, 3, 4, 5]}) == 5
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64," + "A" * 9000}}
    assert estimate_tokens({"messages": [{"role": "user", "content": [image]}]}) == 1
    assert estimate_tokens(None) == 1
