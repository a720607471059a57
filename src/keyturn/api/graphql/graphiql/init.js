// Starts GraphiQL on the Keyturn dev page. A file of its own (never inline script), so the
// page keeps a Content-Security-Policy of script-src 'self'.
(function () {
  "use strict";
  var fetcher = GraphiQL.createFetcher({ url: "/graphql" });
  var help = [
    "# Keyturn GraphQL (dev only).",
    "# Sign in with POST /v1/auth/login, then",
    "# put this in the Headers tab below:",
    '# {"Authorization": "Bearer <access_token>"}',
    "# A field you may not use is null, with",
    "# an `errors` entry naming its path and",
    "# extensions.code (the REST problem code).",
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
