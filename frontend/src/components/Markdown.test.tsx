// @vitest-environment jsdom
import { act, cleanup, fireEvent, render, screen } from '@testing-library/react';
import { renderToStaticMarkup } from 'react-dom/server';
import { afterEach, describe, expect, it, vi } from 'vitest';
import * as markdownToJsx from 'markdown-to-jsx';
import type { ReactElement } from 'react';
import { Markdown, MAX_BRACKETS_PER_BLOCK, compileMarkdown, splitBlocks } from './Markdown';

vi.mock('markdown-to-jsx', async (importOriginal) => {
  const actual = await importOriginal<typeof import('markdown-to-jsx')>();
  return { ...actual, compiler: vi.fn(actual.compiler) };
});

afterEach(cleanup);

const html = (content: string) =>
  renderToStaticMarkup(<Markdown content={content} streaming={false} />);

/** What markdown-to-jsx makes of the text parsed whole (no blocks), in the same <div>. */
const wholeHtml = (content: string) =>
  renderToStaticMarkup(
    <div className="markdown">{compileMarkdown(splitBlocks(content, true)[0] ?? '')}</div>,
  );

/** Whitespace between tags (markdown-to-jsx emits "\n" after some blocks) does not show. */
const norm = (s: string) => s.replace(/>\n+</g, '><');

const ANSWER = [
  '# Streaming chat',
  'The gateway keeps **one socket** per tab and fans out `chunk` frames. See [the docs](https://example.com/docs?a=1#b).',
  '## Steps',
  '1. Start Redis:\n\n   ```bash\n   docker run -p 6379:6379 redis\n   ```\n\n2. Start the gateway.\n3. Open the app.',
  'Then:\n\n- tight item one\n- tight item **two**\n  - nested item\n- item three',
  '| Setting | Default | Notes |\n|---|:-:|--:|\n| `max_connections` | 10000 | per node |\n| `ttl` | 30 s | ~~60 s~~ |',
  '```rust\nfn main() {\n    let x = 1;\n\n    println!("{x}");\n}\n```',
  '> **Note:** quotes work.\n> Two lines.',
  '---',
  'Done:\n\n- [x] build\n- [ ] deploy',
  'Term\n\n    indented code\n\nafter it',
  'Loose list:\n\n- one\n\n- two\n\n- three',
  '3. third\n4. fourth\n\n   with a second paragraph\n\n5. fifth',
  'Setext\n======\n\ntext  \nwith a hard break',
  '~~~python\n# a comment\n\nprint("x")\n~~~',
  'Last paragraph with snake_case_name and `a_b` and https://example.com/x_y_z.',
].join('\n\n');

describe('Markdown', () => {
  it('never lets HTML from the server into the DOM', () => {
    const hostile = [
      'Hi <img src=x onerror="window.__owned=1"> there',
      '',
      '<script>window.__owned=1</script>',
      '',
      '<div onclick="x()">block</div>',
      '',
      '[click](javascript:alert(1)) and <a href="javascript:alert(2)">raw</a>',
      '',
      '<iframe src="https://evil.example"></iframe> <style>body{display:none}</style>',
    ].join('\n');
    const { container } = render(<Markdown content={hostile} streaming={false} />);
    expect(container.querySelector('img, script, iframe, style, div[onclick], [onerror]')).toBeNull();
    expect(container.textContent).toContain('<script>window.__owned=1</script>');
    expect(container.textContent).toContain('<img src=x onerror="window.__owned=1">');
    expect(container.textContent).toContain('<style>body{display:none}</style>');
    for (const a of container.querySelectorAll('a')) {
      expect(a.getAttribute('href') ?? '').not.toMatch(/^javascript:/i);
    }
    expect((window as unknown as { __owned?: number }).__owned).toBeUndefined();
  });

  it('never makes a javascript:, vbscript: or data: URL a link or image source', () => {
    const md = [
      '[a](javascript:alert(1)) [b](JaVaScRiPt:alert(1)) [c](vbscript:msgbox(1))',
      '[d](data:text/html,<script>alert(1)</script>) [e](data:image/svg+xml;base64,PHN2Zz4=)',
      '[f](java%0ascript:alert(1)) [g](%6A%61%76%61%73%63%72%69%70%74:alert(1)) <javascript:alert(1)>',
      '![i](javascript:alert(1)) ![j](data:image/png;base64,AAAA) [k](file:///etc/passwd)',
      '',
      'A reference: [h][bad]',
      '',
      '[bad]: javascript:alert(1)',
    ].join('\n');
    const { container } = render(<Markdown content={md} streaming={false} />);
    const anchors = [...container.querySelectorAll('a')];
    expect(anchors.map((a) => a.textContent)).toEqual(
      expect.arrayContaining(['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'k']),
    );
    for (const a of anchors) expect(a.hasAttribute('href')).toBe(false);
    for (const img of container.querySelectorAll('img')) expect(img.hasAttribute('src')).toBe(false);
  });

  it('never loads an image by itself: it is a link to it', () => {
    const md = 'Look: ![a chart](https://tracker.example/p.png?d=secret) and ![](javascript:alert(1))';
    const { container } = render(<Markdown content={md} streaming={false} />);
    expect(container.querySelector('img')).toBeNull();
    const links = [...container.querySelectorAll('a')].map((a) => [a.textContent, a.getAttribute('href')]);
    expect(links).toEqual([['[a chart]', 'https://tracker.example/p.png?d=secret']]);
    expect(container.textContent).toContain('[image]');
  });

  it('keeps safe links, opening them in a new tab without an opener', () => {
    const md =
      '[web](https://example.com/a?b=c#d) [mail](mailto:a@example.com) [rel](/docs/x) [frag](#top) https://bare.example.com/path';
    const { container } = render(<Markdown content={md} streaming={false} />);
    const links = [...container.querySelectorAll('a')].map((a) => [
      a.textContent,
      a.getAttribute('href'),
      a.getAttribute('target'),
      a.getAttribute('rel'),
    ]);
    expect(links).toEqual([
      ['web', 'https://example.com/a?b=c#d', '_blank', 'noopener noreferrer'],
      ['mail', 'mailto:a@example.com', '_blank', 'noopener noreferrer'],
      ['rel', '/docs/x', '_blank', 'noopener noreferrer'],
      ['frag', '#top', '_blank', 'noopener noreferrer'],
      ['https://bare.example.com/path', 'https://bare.example.com/path', '_blank', 'noopener noreferrer'],
    ]);
  });

  it('renders code blocks with their language, inline code, emphasis and safe links', () => {
    const md = 'Use **Redis** and `SUBSCRIBE`.\n\n```rust\nfn main() {}\n```\n\nSee [docs](https://example.com).';
    const { container } = render(<Markdown content={md} streaming={false} />);
    expect(container.querySelector('strong')?.textContent).toBe('Redis');
    expect(container.querySelector('p code')?.textContent).toBe('SUBSCRIBE');
    expect(container.querySelector('pre code')?.textContent).toBe('fn main() {}\n');
    expect(container.querySelector('pre code')?.className).toBe('language-rust');
    expect(container.querySelector('.code-block__lang')?.textContent).toBe('rust');
    const link = container.querySelector('a')!;
    expect(link.getAttribute('href')).toBe('https://example.com');
    expect(link.getAttribute('rel')).toBe('noopener noreferrer');
  });

  it('copies a code block without its last newline', async () => {
    const writeText = vi.fn(() => Promise.resolve());
    Object.defineProperty(navigator, 'clipboard', { value: { writeText }, configurable: true });
    try {
      render(<Markdown content={'```sh\nnpm ci\nnpm test\n```'} streaming={false} />);
      await act(async () => {
        fireEvent.click(screen.getByRole('button', { name: 'Copy code' }));
      });
      expect(writeText).toHaveBeenCalledWith('npm ci\nnpm test');
      expect(screen.getByRole('button', { name: 'Copy code' }).textContent).toBe('Copied');
    } finally {
      delete (navigator as { clipboard?: unknown }).clipboard;
    }
  });

  it('drops the attributes written after a code fence language', () => {
    const md =
      '```js style="position:fixed;inset:0" onClick="alert(1)" dangerouslySetInnerHTML={{__html:"<img src=x onerror=alert(1)>"}} id="x"\nconst a = 1;\n```';
    const { container } = render(<Markdown content={md} streaming={false} />);
    const code = container.querySelector('pre code')!;
    expect(code.textContent).toBe('const a = 1;\n');
    expect([...code.attributes].map((a) => a.name)).toEqual(['class']);
    expect(container.querySelector('img')).toBeNull();
  });

  it('renders GFM: tables in a scroll box, strikethrough, task lists', () => {
    const md = [
      '| Name | Value |',
      '|:-----|------:|',
      '| a    | 1     |',
      '| b    | 2     |',
      '',
      'Not ~~this~~ but that.',
      '',
      '- [x] done',
      '- [ ] todo',
    ].join('\n');
    const { container } = render(<Markdown content={md} streaming={false} />);
    const table = container.querySelector('.table-scroll > table')!;
    expect([...table.querySelectorAll('th')].map((th) => th.textContent?.trim())).toEqual(['Name', 'Value']);
    expect([...table.querySelectorAll('tbody tr')].map((tr) => tr.textContent?.replace(/\s+/g, ''))).toEqual([
      'a1',
      'b2',
    ]);
    expect(container.querySelector('del')?.textContent).toBe('this');
    const boxes = [...container.querySelectorAll<HTMLInputElement>('li input[type="checkbox"]')];
    expect(boxes.map((b) => [b.checked, b.disabled])).toEqual([
      [true, true],
      [false, true],
    ]);
  });

  it('keeps snake_case words and backslashes in inline code as written', () => {
    const md = 'Set max_connections_per_node to 1_000_000, run `grep -E "^\\d+\\.$"` or `C:\\\\Users`, but _this_ and **__init__** stay emphasis; https://x.example/a_b_c';
    const { container } = render(<Markdown content={md} streaming={false} />);
    const p = container.querySelector('p')!;
    expect(p.textContent).toContain('Set max_connections_per_node to 1_000_000, run');
    expect([...p.querySelectorAll('code')].map((c) => c.textContent)).toEqual([
      'grep -E "^\\d+\\.$"',
      'C:\\\\Users',
    ]);
    expect([...p.querySelectorAll('em')].map((e) => e.textContent)).toEqual(['this']);
    expect(p.querySelector('strong')?.textContent).toBe('init');
    expect(p.querySelector('a')?.getAttribute('href')).toBe('https://x.example/a_b_c');
  });

  it('shows entities as characters and gives headings no ids', () => {
    const { container } = render(
      <Markdown content={'## Summary\n\nSay &quot;hi&quot; &amp; bye'} streaming={false} />,
    );
    expect(container.querySelector('h2')?.hasAttribute('id')).toBe(false);
    expect(container.querySelector('p')?.textContent).toBe('Say "hi" & bye');
  });

  it('shows a block with more than MAX_BRACKETS_PER_BLOCK `[` as plain text, unparsed', () => {
    const hostile = `Look ${'[a]('.repeat(MAX_BRACKETS_PER_BLOCK + 1)}`;
    const nodes = compileMarkdown(hostile);
    expect(nodes).toHaveLength(1);
    const only = nodes[0] as ReactElement<{ children: unknown }>;
    expect(only.type).toBe('p');
    // The text itself, in one piece: the parser never saw it.
    expect(only.props.children).toBe(hostile);
    const { container } = render(<Markdown content={hostile} streaming={false} />);
    expect(container.textContent).toBe(hostile);
    // A real list of links stays Markdown.
    const list = Array.from({ length: 50 }, (_, i) => `- [link ${i}](https://example.com/${i})`).join('\n');
    const { container: links } = render(<Markdown content={list} streaming={false} />);
    expect(links.querySelectorAll('a')).toHaveLength(50);
  });

  it('shows text it cannot parse as plain text instead of failing', () => {
    const deep = `${'> '.repeat(5000)}deep`;
    const { container } = render(<Markdown content={`Before.\n\n${deep}`} streaming />);
    expect(container.querySelector('p')?.textContent).toBe('Before.');
    expect(container.textContent).toContain('deep');
    expect(screen.getByTestId('streaming-cursor')).toBeTruthy();
  });

  it('puts the streaming cursor at the end of the text, only while streaming', () => {
    const { container, rerender } = render(<Markdown content={'First.\n\nSecond **part'} streaming />);
    const cursor = screen.getByTestId('streaming-cursor');
    expect(cursor.parentElement?.textContent).toBe('Second **part');
    expect(cursor.className).toBe('cursor');
    expect(cursor.getAttribute('aria-hidden')).toBe('true');
    expect(container.querySelectorAll('[data-testid="streaming-cursor"]')).toHaveLength(1);
    rerender(<Markdown content={'First.\n\nSecond **part**'} streaming={false} />);
    expect(screen.queryByTestId('streaming-cursor')).toBeNull();
  });

  it('shows a cursor before the first word arrives', () => {
    render(<Markdown content="" streaming />);
    expect(screen.getByTestId('streaming-cursor')).toBeTruthy();
  });

  it('puts the cursor inside the deepest last element', () => {
    const error = vi.spyOn(console, 'error');
    const cases: [string, string, string][] = [
      ['Intro.\n\n- one\n- two\n  - nested **thr', 'LI', 'nested **thr'],
      ['1. a\n\n2. b', 'P', 'b'],
      ['| a | b |\n|---|---|\n| 1 | 2', 'TD', ' 2'],
      ['> quoted *te', 'P', 'quoted *te'],
      ['# Head', 'H1', 'Head'],
      ['Para\n\n---', 'DIV', ''],
      ['- [ ] ', 'LI', ''],
    ];
    for (const [md, tag, text] of cases) {
      const { container, unmount } = render(<Markdown content={md} streaming />);
      const cursor = container.querySelector('[data-testid="streaming-cursor"]')!;
      expect(cursor.parentElement?.tagName, md).toBe(tag);
      if (text) expect(cursor.parentElement?.textContent, md).toBe(text);
      expect(container.querySelectorAll('[data-testid="streaming-cursor"]')).toHaveLength(1);
      unmount();
    }
    expect(error).not.toHaveBeenCalled(); // no React key warnings from the cloned elements
  });
});

describe('Markdown cursor in code', () => {
  it('stays on the line being written inside an unfinished code block', () => {
    render(<Markdown content={'Steps:\n\n```text\n1. one\n2. tw'} streaming />);
    const cursor = screen.getByTestId('streaming-cursor');
    expect(cursor.parentElement?.tagName).toBe('CODE');
    expect(cursor.parentElement?.textContent).toBe('1. one\n2. tw');
  });

  it('closes an unfinished code block at the end of the text, as CommonMark does', () => {
    const { container } = render(<Markdown content={'```py\nx = 1\n\ny = 2'} streaming={false} />);
    expect(container.querySelectorAll('pre')).toHaveLength(1);
    expect(container.querySelector('pre code')?.textContent).toBe('x = 1\n\ny = 2\n');
  });
});

describe('Markdown blocks', () => {
  it('cuts at blank lines outside fences, keeping lists, continuations and fences whole', () => {
    // (each block starts with a newline: see splitBlocks)
    const split = (md: string) => splitBlocks(md).map((block) => block.slice(1));
    expect(split('a\nb\n\n\nc')).toEqual(['a\nb', 'c']);
    expect(split('```\nx\n\ny\n```\n\nz')).toEqual(['```\nx\n\ny\n```', 'z']);
    expect(split('~~~\nx\n\n```\n\ny\n~~~\nz')).toEqual(['~~~\nx\n\n```\n\ny\n~~~\nz']);
    expect(split('- a\n\n- b\n\nc')).toEqual(['- a\n\n- b', 'c']);
    expect(split('1. a\n\n   more\n\n2. b\n\n- c')).toEqual(['1. a\n\n   more\n\n2. b', '- c']);
    expect(split('a\r\n\r\nb')).toEqual(['a', 'b']);
    expect(split('x\n\n```js\nopen')).toEqual(['x', '```js\nopen\n```']);
    expect(splitBlocks('[r]\n\n[r]: https://example.com')).toHaveLength(1);
    expect(splitBlocks('')).toEqual([]);
  });

  it('renders the same as parsing the whole text', () => {
    expect(norm(html(ANSWER))).toBe(norm(wholeHtml(ANSWER)));
    expect(splitBlocks(ANSWER).length).toBeGreaterThan(10);
    // and so does every prefix a stream goes through
    for (let end = 1; end <= ANSWER.length; end += 7) {
      const prefix = ANSWER.slice(0, end);
      expect(norm(html(prefix)), JSON.stringify(prefix)).toBe(norm(wholeHtml(prefix)));
    }
  });

  it('renders the same as parsing the whole text for random answers and their prefixes', () => {
    const pieces = [
      'Plain paragraph with **bold**, *em*, `code` and a [link](https://example.com).',
      'Two lines\nin one paragraph.',
      '## A heading',
      '**Bold title**',
      '```js\nconst a = 1;\n\nconst b = 2;\n```',
      '```\nno language\n```',
      '~~~\ntilde\n\nfence\n~~~',
      '- a\n- b\n- c',
      '* star\n* list',
      '1. one\n2. two\n3. three',
      '4. four\n5. five',
      '- loose a\n\n- loose b',
      '1. step\n\n   ```sh\n   make\n\n   make install\n   ```\n\n2. next step',
      '- item\n  - nested\n    - deeper\n- back',
      '- item with para\n\n  continuation para',
      '| x | y |\n|---|---|\n| 1 | 2 |',
      '| x | y |\n|---|---|\n| 1 | 2 |\nText after table',
      '> a quote\n> on two lines',
      '> - quoted list\n> - item',
      '---',
      '    indented code',
      'Text with snake_case and `a\\.b`.',
      '- [x] task\n- [ ] other',
      'Setext\n---',
      'Intro:\n- a\n- b',
      'Hard  \nbreak',
      '<b>raw</b> html & stuff',
    ];
    const separators = ['\n\n', '\n\n', '\n\n\n', '\n'];
    let seed = 7;
    const random = (n: number) => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    for (let round = 0; round < 400; round += 1) {
      let md = pieces[random(pieces.length)]!;
      for (let i = 1 + random(7); i > 0; i -= 1) {
        md += separators[random(separators.length)]! + pieces[random(pieces.length)]!;
      }
      if (random(3) === 0) md = md.slice(0, 1 + random(md.length));
      expect(norm(html(md)), JSON.stringify(md)).toBe(norm(wholeHtml(md)));
    }
  });

  it('never takes text between two --- lines for front matter', () => {
    const { container } = render(
      <Markdown content={'---\n\nIntro\n---\nMore\n\n---\n\nEnd'} streaming={false} />,
    );
    expect(container.textContent).toContain('Intro');
    expect(container.textContent).toContain('More');
    expect(container.textContent).toContain('End');
  });

  it('keeps the numbers of an ordered list that a paragraph interrupts', () => {
    const { container } = render(
      <Markdown content={'1. one\n2. two\n\nA note.\n\n3. three\n4. four'} streaming={false} />,
    );
    const lists = [...container.querySelectorAll('ol')];
    expect(lists.map((ol) => ol.getAttribute('start'))).toEqual(['1', '3']);
  });

  it('renders a loose list as one list', () => {
    const { container } = render(<Markdown content={'1. a\n\n2. b\n\n3. c'} streaming={false} />);
    expect(container.querySelectorAll('ol')).toHaveLength(1);
    expect(container.querySelectorAll('ol > li')).toHaveLength(3);
  });

  it('parses only the last block again while streaming', () => {
    const compiler = vi.mocked(markdownToJsx.compiler);
    const first = 'First paragraph.\n\n| a |\n|---|\n| 1 |\n\n```js\nx\n```\n\n';
    const { container, rerender } = render(<Markdown content={`${first}Last wor`} streaming />);
    const firstP = container.querySelector('p');
    const table = container.querySelector('table');
    compiler.mockClear();
    rerender(<Markdown content={`${first}Last words`} streaming />);
    expect(compiler.mock.calls.map((call) => call[0])).toEqual(['\nLast words']);
    expect(container.querySelector('p')).toBe(firstP);
    expect(container.querySelector('table')).toBe(table);
    rerender(<Markdown content={`${first}Last words.`} streaming />);
    // A new block: the one before is parsed no more (its cursor moves on without a new parse).
    compiler.mockClear();
    rerender(<Markdown content={`${first}Last words.\n\nNext`} streaming />);
    expect(compiler.mock.calls.map((call) => call[0])).toEqual(['\nNext']);
    expect(screen.getByTestId('streaming-cursor').parentElement?.textContent).toBe('Next');
    // The end of the stream removes the cursor without parsing anything.
    compiler.mockClear();
    rerender(<Markdown content={`${first}Last words.\n\nNext`} streaming={false} />);
    expect(compiler).not.toHaveBeenCalled();
    expect(screen.queryByTestId('streaming-cursor')).toBeNull();
  });
});
