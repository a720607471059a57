// Starts GraphiQL on the Keyturn dev page. A file of its own (never inline script), so the
// page keeps a Content-Security-Policy of script-src 'self'.
(function () {
  "use strict";
  var fetcher = GraphiQL.createFetcher({ url: "/graphql" });
  var help = [
    "# Keyturn GraphQL (dev only; production serves POST /graphql without this page).",
    "# Sign in (POST /v1/auth/login), then add in the Headers tab below:",
    '#   {"Authorization": "Bearer <access_token>"}',
    "# A field you may not read comes back null with an entry in `errors` that carries",
    "# its path and extensions.code (the REST problem code, e.g. permission_denied).",
    "",
    "query Me {",
    "  me { id email emailVerified roles }",
    "}",
    "",
  ].join("\n");
  var root = ReactDOM.createRoot(document.getElementById("graphiql"));
  root.render(
    React.createElement(GraphiQL, {
      fetcher: fetcher,
      defaultQuery: help,
      defaultEditorToolsVisibility: "headers",
    })
  );
})();
