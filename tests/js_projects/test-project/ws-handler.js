// CommonJS, as Eclipse Dirigible 4 projects wrote handlers: exports.onX and require().
var websockets = require("net/v4/websockets");

var counter = 0;

exports.onOpen = function () {
    console.info("my-endpoint: open");
};

exports.onMessage = function (message, from) {
    counter += 1;
    return JSON.stringify({
        counter: counter,
        echo: message,
        from: from,
        method: websockets.getMethod(),
        message: websockets.getMessage(),
    });
};

exports.onClose = function () {
    console.info("my-endpoint: closed after " + counter + " messages");
};
