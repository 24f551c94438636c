// AUTH_MODE=headers: Swagger UI draws one form per security scheme, and the identity is
// three api-key schemes (one per header), so this page's own form sets all three at once.
"use strict";

const identityForm = document.getElementById("identity");
const identityFields = Array.from(identityForm.querySelectorAll("[data-header]"));
const identityStatus = document.getElementById("identity-status");

// Each field's scheme, found by its header in the document rather than named twice.
const schemes = spec.components.securitySchemes;
const schemeOf = (field) =>
  Object.keys(schemes).find((name) => schemes[name].in === "header" && schemes[name].name === field.dataset.header);

function showIdentity() {
  const [organization, user, role] = identityFields.map((field) => field.value);
  identityStatus.textContent =
    `Acting as ${user} (${role}) in organization ${organization}: every Try it out sends these three headers.`;
}

const ui = SwaggerUIBundle({
  dom_id: "#ui",
  spec,
  deepLinking: true,
  // Development identities, not secrets: keeping them spares retyping after a reload.
  persistAuthorization: true,
  onComplete() {
    // Swagger UI has restored what it kept by now: show it, so a reload says who you are.
    const authorized = ui.authSelectors.authorized().toJS();
    const kept = identityFields.map((field) => authorized[schemeOf(field)]?.value);
    if (kept.every((value) => value)) {
      identityFields.forEach((field, i) => (field.value = kept[i]));
      showIdentity();
    }
    // Authorizing needs the loaded document (it holds the schemes): enabled only now.
    identityForm.querySelector("button").disabled = false;
  },
});

identityForm.addEventListener("submit", (event) => {
  event.preventDefault();
  for (const field of identityFields) {
    field.value = field.value.trim();
    ui.preauthorizeApiKey(schemeOf(field), field.value);
  }
  // preauthorizeApiKey does not persist by itself (only the Authorize dialog's button does).
  ui.authActions.persistAuthorizationIfNeeded();
  showIdentity();
});
