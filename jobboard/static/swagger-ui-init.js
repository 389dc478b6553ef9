// Starts Swagger UI on /api/docs from the settings in the container's data attributes
// (served as a file: the page's Content-Security-Policy allows no inline script).
"use strict";
window.addEventListener("DOMContentLoaded", function () {
  var container = document.getElementById("swagger-ui-container");
  var config = JSON.parse(container.dataset.config || "{}");
  config.url = container.dataset.specUrl;
  config.dom_id = "#swagger-ui-container";
  window.ui = window.SwaggerUIBundle(config);
});
