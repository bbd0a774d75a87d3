// The API reference page (/api/v1/docs): Swagger UI over the generated OpenAPI document.
window.addEventListener("DOMContentLoaded", function () {
  var root = document.getElementById("api-docs");
  SwaggerUIBundle({ url: root.dataset.specUrl, domNode: root, deepLinking: true, tryItOutEnabled: false });
});
