/*
 * Keyturn hosted pages: the WebAuthn ceremonies (W3C WebAuthn Level 3), nothing else.
 *
 * Served from our own origin under "script-src 'self'; connect-src 'self'" on the three
 * pages that offer passkeys; every other page has no script. A form marked
 * data-webauthn="create" or "get" stays hidden without this script (no JavaScript, no
 * passkeys). On submit it asks our server for the options (POST data-options with the
 * form's CSRF token), runs the ceremony in the browser, writes the credential as JSON
 * (section 5.1 "toJSON" shape: base64url for every byte string) into the hidden field
 * "credential", and submits the form the ordinary way: the server answers with a page.
 *
 * PublicKeyCredential.parseCreationOptionsFromJSON / parseRequestOptionsFromJSON are not
 * in every browser yet, so the base64url <-> ArrayBuffer conversion is done by hand.
 */
(function () {
  "use strict";

  // RFC 4648 section 5 (base64url, no padding) to bytes.
  function toBuffer(text) {
    var base64 = String(text).replace(/-/g, "+").replace(/_/g, "/");
    while (base64.length % 4) {
      base64 += "=";
    }
    var binary = atob(base64);
    var bytes = new Uint8Array(binary.length);
    for (var i = 0; i < binary.length; i += 1) {
      bytes[i] = binary.charCodeAt(i);
    }
    return bytes.buffer;
  }

  function toBase64url(buffer) {
    var bytes = new Uint8Array(buffer);
    var binary = "";
    for (var i = 0; i < bytes.length; i += 1) {
      binary += String.fromCharCode(bytes[i]);
    }
    return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function descriptors(list) {
    return (list || []).map(function (item) {
      var copy = Object.assign({}, item);
      copy.id = toBuffer(item.id);
      return copy;
    });
  }

  // PublicKeyCredentialCreationOptionsJSON (section 5.4) to the browser's form.
  function creationOptions(json) {
    var options = Object.assign({}, json);
    options.challenge = toBuffer(json.challenge);
    options.user = Object.assign({}, json.user, { id: toBuffer(json.user.id) });
    options.excludeCredentials = descriptors(json.excludeCredentials);
    return options;
  }

  // PublicKeyCredentialRequestOptionsJSON (section 5.5) to the browser's form.
  function requestOptions(json) {
    var options = Object.assign({}, json);
    options.challenge = toBuffer(json.challenge);
    options.allowCredentials = descriptors(json.allowCredentials);
    return options;
  }

  // RegistrationResponseJSON / AuthenticationResponseJSON (section 5.1).
  function credentialJson(credential) {
    var response = credential.response;
    var out = {
      id: credential.id,
      rawId: toBase64url(credential.rawId),
      type: credential.type,
      authenticatorAttachment: credential.authenticatorAttachment || null,
      clientExtensionResults: credential.getClientExtensionResults(),
      response: { clientDataJSON: toBase64url(response.clientDataJSON) }
    };
    if (response.attestationObject) {
      out.response.attestationObject = toBase64url(response.attestationObject);
      if (typeof response.getTransports === "function") {
        out.response.transports = response.getTransports();
      }
    } else {
      out.response.authenticatorData = toBase64url(response.authenticatorData);
      out.response.signature = toBase64url(response.signature);
      out.response.userHandle = response.userHandle ? toBase64url(response.userHandle) : null;
    }
    return out;
  }

  function fetchOptions(form) {
    var body = new URLSearchParams();
    body.set("csrf_token", form.elements.csrf_token.value);
    return fetch(form.getAttribute("data-options"), {
      method: "POST",
      body: body,
      credentials: "same-origin",
      headers: { Accept: "application/json" }
    }).then(function (answer) {
      if (answer.ok) {
        return answer.json();
      }
      return answer.json().then(
        function (body) {
          // A stale sign-in or a dead second step: the server names the sign-in page.
          if (body && typeof body.location === "string" && body.location.charAt(0) === "/") {
            window.location.assign(body.location);
          }
          throw new Error("options refused: " + answer.status);
        },
        function () {
          throw new Error("options refused: " + answer.status);
        }
      );
    });
  }

  function ceremony(form) {
    var kind = form.getAttribute("data-webauthn");
    return fetchOptions(form)
      .then(function (json) {
        var options = json.publicKey || json;
        if (kind === "create") {
          return navigator.credentials.create({ publicKey: creationOptions(options) });
        }
        return navigator.credentials.get({ publicKey: requestOptions(options) });
      })
      .then(function (credential) {
        if (!credential) {
          throw new Error("no credential");
        }
        form.elements.credential.value = JSON.stringify(credentialJson(credential));
        // HTMLFormElement.submit() fires no submit event: no second ceremony.
        form.submit();
      });
  }

  function start(form) {
    var error = form.querySelector("[data-webauthn-error]");
    var button = form.querySelector("button");
    form.hidden = false;
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      if (form.elements.credential.value) {
        return;
      }
      if (typeof form.reportValidity === "function" && !form.reportValidity()) {
        return;
      }
      if (button) {
        button.disabled = true;
      }
      if (error) {
        error.hidden = true;
      }
      ceremony(form).catch(function () {
        // Cancelled, timed out, no matching passkey or a refused request: say so, retry.
        form.elements.credential.value = "";
        if (button) {
          button.disabled = false;
        }
        if (error) {
          error.textContent = form.getAttribute("data-failed") || "The passkey was not accepted.";
          error.hidden = false;
        }
      });
    });
  }

  // Browsers refuse an IP address as RP ID (section 5.1.3): the forms stay hidden there
  // and the page's own hint says to use localhost.
  var host = window.location.hostname;
  var onIp = /^[0-9.]+$/.test(host) || host.charAt(0) === "[";
  if (onIp || !window.PublicKeyCredential || !navigator.credentials) {
    return;
  }
  var forms = document.querySelectorAll("form[data-webauthn]");
  for (var i = 0; i < forms.length; i += 1) {
    start(forms[i]);
  }
})();
