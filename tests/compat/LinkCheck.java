import java.io.ByteArrayInputStream;
import java.io.DataInputStream;
import java.io.File;
import java.io.IOException;
import java.lang.reflect.Constructor;
import java.lang.reflect.Executable;
import java.lang.reflect.Field;
import java.lang.reflect.Method;
import java.lang.reflect.Modifier;
import java.net.URL;
import java.net.URLClassLoader;
import java.util.ArrayList;
import java.util.Enumeration;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Set;
import java.util.TreeSet;
import java.util.jar.JarEntry;
import java.util.jar.JarFile;

/**
 * Binary compatibility of the provider JAR with one Keycloak distribution, without starting it.
 *
 *   java tests/compat/LinkCheck.java <provider.jar> <keycloak-dist-dir> [<baseline-dist-dir>]
 *
 * Loads the JAR's classes over the distribution's lib/ jars and checks, as the JVM would at
 * run time, that
 *  - every method and field the JAR refers to (outside the JDK) resolves with the exact
 *    descriptor (return type included: boolean vs Boolean is a NoSuchMethodError),
 *  - every class loads, links and initialises (no missing supertypes, no override of a final),
 *  - no concrete class of ours leaves an abstract Keycloak method unimplemented (AbstractMethodError),
 *  - no method of ours that looks like an override has lost it: if Keycloak kept the name and
 *    arity but changed the signature, ours would silently stop being called (error); with a
 *    baseline distribution (the compile version), a method that overrides one there must override
 *    one here too, except the known newer hooks (the four-argument retrieveToken, V2, from 26.6),
 *    which are listed as information.
 * Exit status 0: no errors; 1: errors (listed); 2: usage.
 */
public class LinkCheck {

    record Ref(String kind, String owner, String name, String desc) {
    }

    record Decl(String name, String desc, int access) {
    }

    record ClassInfo(String name, Set<Ref> refs, List<Decl> methods) {
    }

    public static void main(String[] args) throws Exception {
        if (args.length != 2 && args.length != 3) {
            System.err.println("usage: java LinkCheck.java <provider.jar> <keycloak-dist-dir> [<baseline-dist-dir>]");
            System.exit(2);
        }
        File jar = new File(args[0]);
        File dist = new File(args[1]);
        List<URL> urls = new ArrayList<>();
        urls.add(jar.toURI().toURL());
        collectJars(new File(dist, "lib"), urls);
        if (urls.size() < 10) {
            System.err.println("LinkCheck: no Keycloak jars under " + dist + "/lib");
            System.exit(2);
        }
        List<ClassInfo> ours = readJar(jar);
        List<String> errors = new ArrayList<>();
        Set<String> info = new TreeSet<>();
        int checked = 0;
        File baselineDir = args.length > 2 ? new File(args[2]) : null;
        URLClassLoader baseline = null;
        if (baselineDir != null) {
            List<URL> b = new ArrayList<>();
            b.add(jar.toURI().toURL());
            collectJars(new File(baselineDir, "lib"), b);
            baseline = new URLClassLoader(b.toArray(URL[]::new), ClassLoader.getPlatformClassLoader());
        }
        try (URLClassLoader loader = new URLClassLoader(urls.toArray(URL[]::new), ClassLoader.getPlatformClassLoader())) {
            for (ClassInfo ci : ours) {
                String cn = ci.name().replace('/', '.');
                Class<?> c;
                try {
                    // Initialising runs our static initialisers (loggers, ObjectMappers; the native
                    // library is loaded only in postInit), which also verifies the class.
                    c = Class.forName(cn, true, loader);
                } catch (Throwable t) {
                    errors.add("class " + cn + " does not load: " + t);
                    continue;
                }
                for (Ref r : ci.refs()) {
                    Class<?> owner;
                    try {
                        owner = Class.forName(r.owner().replace('/', '.'), false, loader);
                    } catch (Throwable t) {
                        errors.add(cn + " uses missing class " + r.owner() + " (" + t + ")");
                        continue;
                    }
                    if (owner.getClassLoader() != loader) {
                        continue; // the JDK: --release 17 takes care of it
                    }
                    checked++;
                    try {
                        if (!resolves(owner, r) && KNOWN_NEWER.contains(r.name() + r.desc()) && owner.isAssignableFrom(c)) {
                            // our override of a newer hook calling Keycloak's own (never run here)
                            info.add(cn + " calls super " + r.name() + r.desc() + ", absent in this version");
                        } else if (!resolves(owner, r)) {
                            errors.add(cn + " calls " + r.owner().replace('/', '.') + "." + r.name() + r.desc()
                                    + ", which does not exist with this signature here (NoSuch" + (r.kind().equals("field") ? "Field" : "Method") + "Error)");
                        }
                    } catch (Throwable t) {
                        errors.add(cn + ": cannot inspect " + r.owner() + " (" + t + ")");
                    }
                }
                if (!c.isInterface() && !Modifier.isAbstract(c.getModifiers())) {
                    try {
                        for (Method m : c.getMethods()) {
                            if (Modifier.isAbstract(m.getModifiers())) {
                                errors.add(cn + " does not implement " + m.getDeclaringClass().getName() + "." + m.getName()
                                        + desc(m) + " (AbstractMethodError when Keycloak calls it)");
                            }
                        }
                        for (Class<?> s = c.getSuperclass(); s != null; s = s.getSuperclass()) {
                            for (Method m : s.getDeclaredMethods()) {
                                if (Modifier.isAbstract(m.getModifiers()) && !Modifier.isPublic(m.getModifiers())
                                        && findConcrete(c, m.getName(), desc(m)) == null) {
                                    errors.add(cn + " does not implement " + s.getName() + "." + m.getName() + desc(m));
                                }
                            }
                        }
                    } catch (Throwable t) {
                        errors.add(cn + ": cannot list methods (" + t + ")");
                    }
                }
                for (Decl d : ci.methods()) {
                    boolean bridge = (d.access() & 0x0040) != 0;
                    if (d.name().startsWith("<") || (d.access() & (Modifier.STATIC | Modifier.PRIVATE)) != 0
                            || ((d.access() & 0x1000) != 0 && !bridge) /* synthetic, not a bridge */) {
                        continue;
                    }
                    List<String> changed = new ArrayList<>();
                    boolean exact = overrides(c, loader, ci, d, changed);
                    if (!exact && !changed.isEmpty()) {
                        errors.add(cn + "." + d.name() + d.desc() + " no longer overrides anything: Keycloak here has "
                                + String.join(", ", changed) + " (ours would never be called)");
                    } else if (!exact && baseline != null && overrides(baseline.loadClass(cn), baseline, ci, d, new ArrayList<>())) {
                        if (KNOWN_NEWER.contains(d.name() + d.desc())) {
                            info.add(cn + "." + d.name() + d.desc() + " overrides nothing here (method absent in this version)");
                        } else {
                            errors.add(cn + "." + d.name() + d.desc() + " overrides a Keycloak method on " + baselineDir.getName()
                                    + " that is gone here (ours would never be called)");
                        }
                    }
                }
            }
        } finally {
            if (baseline != null) {
                baseline.close();
            }
        }
        for (String i : info) {
            System.out.println("info: " + i);
        }
        for (String e : errors) {
            System.out.println("ERROR: " + e);
        }
        System.out.printf("LinkCheck %s against %s: %d classes, %d Keycloak/library references checked, %d error(s)%n",
                jar.getName(), dist.getName(), ours.size(), checked, errors.size());
        System.exit(errors.isEmpty() ? 0 : 1);
    }

    /**
     * Whether our method d of class c overrides a Keycloak method (as loaded by loader); methods of
     * the same name and arity but another descriptor go into changed.
     */
    static boolean overrides(Class<?> c, ClassLoader loader, ClassInfo ci, Decl d, List<String> changed) {
        boolean bridge = (d.access() & 0x0040) != 0;
        // A covariant override (ours returns a subtype) overrides through its bridge method,
        // which carries Keycloak's exact descriptor and is checked on its own.
        String ourParams = d.desc().substring(0, d.desc().indexOf(')') + 1);
        String arity = arityOf(d.desc());
        boolean exact = false;
        for (Class<?> s : supertypes(c)) {
            if (s.getClassLoader() != loader || s.getName().startsWith("dev.freshtoken.")) {
                continue;
            }
            for (Method m : s.getDeclaredMethods()) {
                if (!m.getName().equals(d.name()) || Modifier.isStatic(m.getModifiers()) || Modifier.isPrivate(m.getModifiers())) {
                    continue;
                }
                String md = desc(m);
                if (md.equals(d.desc()) || (!bridge && md.startsWith(ourParams) && hasBridge(ci, d.name(), md))) {
                    exact = true;
                } else if (arityOf(md).equals(arity)) {
                    changed.add(s.getName() + "." + m.getName() + md);
                }
            }
        }
        return exact;
    }

    /**
     * Overrides of the compile version that are absent in older supported versions: the V2
     * endpoint's hook (26.6+) and OIDCIdentityProvider.verifySignature (26.5+, the tenant check
     * of client assertions and JWT authorization grants; 26.4 calls verify, also overridden).
     */
    static final Set<String> KNOWN_NEWER = Set.of(
            "retrieveToken(Lorg/keycloak/models/KeycloakSession;Lorg/keycloak/models/FederatedIdentityModel;"
                    + "Lorg/keycloak/models/UserSessionModel;Lorg/keycloak/models/UserModel;)Ljakarta/ws/rs/core/Response;",
            "verifySignature(Lorg/keycloak/jose/jws/JWSInput;)Z");

    static boolean hasBridge(ClassInfo ci, String name, String desc) {
        return ci.methods().stream().anyMatch(m -> m.name().equals(name) && m.desc().equals(desc) && (m.access() & 0x0040) != 0);
    }

    static String arityOf(String desc) {
        return Integer.toString(params(desc).size());
    }

    static List<String> params(String desc) {
        List<String> out = new ArrayList<>();
        int i = 1;
        while (desc.charAt(i) != ')') {
            int start = i;
            while (desc.charAt(i) == '[') {
                i++;
            }
            if (desc.charAt(i) == 'L') {
                i = desc.indexOf(';', i);
            }
            i++;
            out.add(desc.substring(start, i));
        }
        return out;
    }

    static Set<Class<?>> supertypes(Class<?> c) {
        Set<Class<?>> out = new LinkedHashSet<>();
        List<Class<?>> todo = new ArrayList<>();
        todo.add(c);
        while (!todo.isEmpty()) {
            Class<?> x = todo.remove(0);
            if (x == null || !out.add(x)) {
                continue;
            }
            todo.add(x.getSuperclass());
            todo.addAll(List.of(x.getInterfaces()));
        }
        out.remove(c);
        return out;
    }

    /** JVM resolution (JVMS 5.4.3.3/4/2): the class and its superclasses, then the superinterfaces. */
    static boolean resolves(Class<?> owner, Ref r) {
        if (r.kind().equals("field")) {
            for (Class<?> s : withSupertypes(owner)) {
                for (Field f : s.getDeclaredFields()) {
                    if (f.getName().equals(r.name()) && desc(f.getType()).equals(r.desc())) {
                        return true;
                    }
                }
            }
            return false;
        }
        for (Class<?> s : withSupertypes(owner)) {
            if (r.name().equals("<init>")) {
                for (Constructor<?> k : s.getDeclaredConstructors()) {
                    if (desc(k).equals(r.desc())) {
                        return true;
                    }
                }
                return false;
            }
            for (Method m : s.getDeclaredMethods()) {
                if (m.getName().equals(r.name()) && desc(m).equals(r.desc())) {
                    return true;
                }
            }
        }
        // Methods of java.lang.Object on interfaces.
        for (Method m : Object.class.getDeclaredMethods()) {
            if (m.getName().equals(r.name()) && desc(m).equals(r.desc())) {
                return true;
            }
        }
        return false;
    }

    static List<Class<?>> withSupertypes(Class<?> c) {
        List<Class<?>> out = new ArrayList<>();
        for (Class<?> s = c; s != null; s = s.getSuperclass()) {
            out.add(s);
        }
        out.addAll(supertypes(c).stream().filter(Class::isInterface).toList());
        return out;
    }

    static Method findConcrete(Class<?> c, String name, String d) {
        for (Class<?> s = c; s != null; s = s.getSuperclass()) {
            for (Method m : s.getDeclaredMethods()) {
                if (m.getName().equals(name) && desc(m).equals(d) && !Modifier.isAbstract(m.getModifiers())) {
                    return m;
                }
            }
        }
        return null;
    }

    static String desc(Executable e) {
        StringBuilder b = new StringBuilder("(");
        for (Class<?> p : e.getParameterTypes()) {
            b.append(desc(p));
        }
        b.append(')');
        b.append(e instanceof Method m ? desc(m.getReturnType()) : "V");
        return b.toString();
    }

    static String desc(Class<?> t) {
        if (t.isArray()) {
            return t.getName().replace('.', '/');
        }
        if (t.isPrimitive()) {
            return switch (t.getName()) {
                case "boolean" -> "Z";
                case "byte" -> "B";
                case "char" -> "C";
                case "short" -> "S";
                case "int" -> "I";
                case "long" -> "J";
                case "float" -> "F";
                case "double" -> "D";
                default -> "V";
            };
        }
        return "L" + t.getName().replace('.', '/') + ";";
    }

    static void collectJars(File dir, List<URL> out) throws IOException {
        File[] files = dir.listFiles();
        if (files == null) {
            return;
        }
        for (File f : files) {
            if (f.isDirectory()) {
                collectJars(f, out);
            } else if (f.getName().endsWith(".jar") && !f.getName().startsWith("org.keycloak.keycloak-fresh-token")) {
                out.add(f.toURI().toURL());
            }
        }
    }

    static List<ClassInfo> readJar(File jar) throws IOException {
        List<ClassInfo> out = new ArrayList<>();
        try (JarFile jf = new JarFile(jar)) {
            Enumeration<JarEntry> en = jf.entries();
            while (en.hasMoreElements()) {
                JarEntry e = en.nextElement();
                if (e.getName().endsWith(".class") && !e.getName().contains("module-info")) {
                    out.add(parse(jf.getInputStream(e).readAllBytes()));
                }
            }
        }
        return out;
    }

    /** The constant pool's member references and the declared methods of one class file. */
    static ClassInfo parse(byte[] bytes) throws IOException {
        DataInputStream in = new DataInputStream(new ByteArrayInputStream(bytes));
        if (in.readInt() != 0xCAFEBABE) {
            throw new IOException("not a class file");
        }
        in.readUnsignedShort();
        in.readUnsignedShort();
        int n = in.readUnsignedShort();
        Object[] cp = new Object[n];
        int[][] refs = new int[n][];
        int[] tags = new int[n];
        for (int i = 1; i < n; i++) {
            int tag = in.readUnsignedByte();
            tags[i] = tag;
            switch (tag) {
                case 1 -> cp[i] = in.readUTF();
                case 3, 4 -> in.readInt();
                case 5, 6 -> {
                    in.readLong();
                    i++;
                }
                case 7, 8, 16, 19, 20 -> refs[i] = new int[] {in.readUnsignedShort()};
                case 9, 10, 11, 12, 17, 18 -> refs[i] = new int[] {in.readUnsignedShort(), in.readUnsignedShort()};
                case 15 -> {
                    in.readUnsignedByte();
                    refs[i] = new int[] {in.readUnsignedShort()};
                }
                default -> throw new IOException("unknown constant pool tag " + tag);
            }
        }
        in.readUnsignedShort();
        String self = (String) cp[refs[in.readUnsignedShort()][0]];
        Set<Ref> found = new LinkedHashSet<>();
        for (int i = 1; i < n; i++) {
            if (tags[i] == 9 || tags[i] == 10 || tags[i] == 11) {
                String owner = (String) cp[refs[refs[i][0]][0]];
                int[] nt = refs[refs[i][1]];
                if (owner.startsWith("[")) {
                    continue;
                }
                found.add(new Ref(tags[i] == 9 ? "field" : "method", owner, (String) cp[nt[0]], (String) cp[nt[1]]));
            }
        }
        in.readUnsignedShort(); // super_class
        int ifaces = in.readUnsignedShort();
        for (int i = 0; i < ifaces; i++) {
            in.readUnsignedShort();
        }
        skipMembers(in, null, cp);
        List<Decl> methods = new ArrayList<>();
        skipMembers(in, methods, cp);
        return new ClassInfo(self, found, methods);
    }

    static void skipMembers(DataInputStream in, List<Decl> into, Object[] cp) throws IOException {
        int count = in.readUnsignedShort();
        for (int i = 0; i < count; i++) {
            int access = in.readUnsignedShort();
            String name = (String) cp[in.readUnsignedShort()];
            String desc = (String) cp[in.readUnsignedShort()];
            if (into != null) {
                into.add(new Decl(name, desc, access));
            }
            int attrs = in.readUnsignedShort();
            for (int a = 0; a < attrs; a++) {
                in.readUnsignedShort();
                in.skipBytes(in.readInt());
            }
        }
    }
}
