// A helper module beside the handler, imported by a relative path.
exports.describe = function (label, value) {
    return label + "=" + JSON.stringify(value);
};
