// The handler of an outbound connection checks.js opens with websockets.createWebsocket.
export function onOpen(from) {
    console.log("feed open: " + from);
}

export function onMessage(message) {
    console.log("feed said " + message);
    if (message === "hello") {
        return "feed-handler got hello";
    }
}

export function onClose() {
    console.log("feed closed");
}
