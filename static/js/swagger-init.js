// Starts Swagger UI on /schema. A file, not an inline script: pages allow scripts from this site only (CSP).
(function () {
  "use strict";
  var container = document.getElementById("swagger-container");
  window.SwaggerUIBundle({
    url: container.dataset.spec,
    dom_id: "#swagger-container",
    deepLinking: true,
    showExtensions: true,
    showCommonExtensions: true,
    presets: [window.SwaggerUIBundle.presets.apis, window.SwaggerUIBundle.SwaggerUIStandalonePreset],
  });
})();
