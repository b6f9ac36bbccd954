// Coverage is measured over the product's own sources only, not over test helpers.
export default () => ['src/', 'plugins/', 'routes/']
