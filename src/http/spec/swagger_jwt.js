// AUTH_MODE=jwt: Swagger UI's Authorize takes the bearer token. It is kept for this page
// only: stored in the browser it would outlive the tab, readable by any script of this origin.
"use strict";

SwaggerUIBundle({ dom_id: "#ui", spec, deepLinking: true });
