// The site's script: a module, bundled, minified and content-hashed by
// `kiln build`. Import from other files or from node_modules as usual.
const greeting: string = "kiln";
document.documentElement.dataset.builtBy = greeting;
