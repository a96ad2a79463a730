"""The handler of my-websocket: codbex's names (onOpen, onMessage, ...) work unchanged."""

greeted = []


def onOpen(client):
    greeted.append(client.id)
    client.send(f"Hello {client.id}, you are visitor number {len(greeted)}")


def onMessage(message, client):
    client.send(f"my-websocket received: {message}")


def onError(error, client):
    client.send(f"my-websocket failed: {error}")


def onClose(client):
    print(f"{client.id} left my-websocket")
