// Show the current page again (the router listens for hashchange).
export const reload = () => window.dispatchEvent(new HashChangeEvent("hashchange"));
