"use strict";
// Swagger UI for the committed OpenAPI document. "Try it out" calls the local stack on this origin;
// for the JWT routes, Authorize with a token from /app/session?as=USER_ID&org=ORG_ID.
window.addEventListener("load", () => {
  window.ui = SwaggerUIBundle({
    url: "/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
    plugins: [SwaggerUIBundle.plugins.DownloadUrl],
    layout: "StandaloneLayout",
    validatorUrl: null,
  });
});
