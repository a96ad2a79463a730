"""The handler of the stats endpoint: answers each text message with its word statistics."""

from collections import Counter


def on_message(message, client):
    if isinstance(message, bytes):
        client.send({"error": "send text, not binary"})
        return
    words = message.split()
    client.send({"words": len(words), "most_common": Counter(words).most_common(3)})
