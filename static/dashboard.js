// Small progressive enhancements; every page works without this file.
document.addEventListener("click", async (event) => {
  const button = event.target.closest("[data-copy]");
  if (!button) return;
  const field = document.getElementById(button.dataset.copy);
  field.select();
  try {
    await navigator.clipboard.writeText(field.value);
  } catch {
    // navigator.clipboard needs a secure context (HTTPS or localhost); fall back to the selection.
    document.execCommand("copy");
  }
  button.textContent = "Copied";
});
